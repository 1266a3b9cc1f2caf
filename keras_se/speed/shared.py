"""Speed layers built on another layer's variables: the mechanism behind `keras_se.speed.accelerate`.

A speed layer made with ``SpeedLayer.sharing(source, ...)`` runs its own ``build`` (input
specs, shapes, checks) but every ``add_weight`` returns the source layer's variable of the
same name instead of creating one. The fast graph and the textbook model it came from
then hold the very same variables: training one trains the other, and saving the
textbook model saves what the fast graph learned. Freezing follows the sources too: a
variable's ``trainable`` flag is the source's, and `source_trainable` tells a layer whether
its source layer is in training mode (a frozen ``BatchNormalization`` runs on its moving
statistics also in training, as Keras's does).
"""

from __future__ import annotations


class _Sources:
    """The layers a speed layer borrows its variables from.

    A plain object, so that Keras does not track the source layers as sublayers of the
    speed layer (their variables are tracked once, through the attributes `build` sets).
    """

    def __init__(self, layers):
        self.layers = tuple(layers)

    def variable(self, owner, name, shape):
        for layer in self.layers:
            for variable in layer.weights:
                if variable.name == name:
                    if tuple(variable.shape) != tuple(shape):
                        raise ValueError(
                            f"{type(owner).__name__} '{owner.name}' cannot share variable "
                            f"'{name}' of layer '{layer.name}': shape {tuple(variable.shape)}, "
                            f"needs {tuple(shape)}"
                        )
                    return variable
        names = [layer.name for layer in self.layers]
        raise ValueError(
            f"{type(owner).__name__} '{owner.name}' needs a variable '{name}' that none of "
            f"its source layers {names} has"
        )


class SharedVariables:
    """Mixin of the speed layers: built on the variables of existing layers (`sharing`).

    Example:
        >>> import keras, numpy as np
        >>> from keras_se.speed import GroupedConv2D
        >>> conv = keras.layers.Conv2D(4, 3, groups=2)
        >>> _ = conv(np.ones((1, 5, 5, 4), "float32"))
        >>> fast = GroupedConv2D.sharing(conv)
        >>> _ = fast(np.ones((1, 5, 5, 4), "float32"))
        >>> fast.kernel is conv.kernel or fast._kernel is conv._kernel
        True
    """

    _sources = None

    @classmethod
    def sharing(cls, *sources, **config):
        """A layer of this class over the variables of the built layers ``sources``.

        ``config`` is the layer's constructor arguments; by default the first source's
        config (a speed layer that replaces one Keras layer takes its arguments).
        """
        for source in sources:
            if not source.built:
                raise ValueError(f"Layer '{source.name}' must be built before it is shared")
        layer = cls(**(config or sources[0].get_config()))
        layer._sources = _Sources(sources)
        return layer

    def add_weight(self, shape=None, *args, name=None, **kwargs):
        if self._sources is None:
            return super().add_weight(shape, *args, name=name, **kwargs)
        return self._sources.variable(self, name, shape)

    def source_trainable(self, index=0):
        """Whether source ``index`` (or this layer, when it shares nothing) trains.

        ``trainable`` of the speed layer itself stays True: the textbook model's layers
        say what is frozen.
        """
        if self._sources is None:
            return self.trainable
        return self._sources.layers[index].trainable

    @property
    def shares_variables(self):
        """True for a layer made by `sharing`."""
        return self._sources is not None


def is_shared(layer):
    """True for a speed layer made by `SharedVariables.sharing`.

    Example:
        >>> import keras
        >>> is_shared(keras.layers.Dense(2))
        False
    """
    return isinstance(layer, SharedVariables) and layer.shares_variables


