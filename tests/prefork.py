"""Test processes forked from an interpreter that has already imported TensorFlow.

Every ``python -m keras_se_core.cli ...`` a test starts spends ~7 s of CPU importing
TensorFlow, Keras, scikit-learn and TensorBoard before it runs one line of keras_se: the suite
started ~50 of them (~390 CPU-s on a 2-core machine). `Popen` and `run` here take the same
arguments as `subprocess.Popen`/`subprocess.run` (the subset the tests use) and, for a
``[sys.executable, "-m" MODULE | "-c" CODE | SCRIPT, ...]`` command, fork the process from a
*preloaded* interpreter (one per pytest process, started on first use): it imported those
libraries and nothing else, never ran a TensorFlow op (so no runtime, no thread pools to break
in a fork), and forks a child per command that gets the requested stdin/stdout/stderr, cwd and
environment, a fresh NumPy seed, then runs the module/code/script as ``__main__`` and exits the
way Python does (atexit handlers, exit status, a traceback and status 1 for an uncaught
exception). The child is a real process: its pid takes real signals (SIGKILL, SIGTERM: the
kill-and-resume tests), its exit status is reported by the preloaded interpreter (its parent),
``-signum`` when a signal ended it, as with `subprocess`.

Anything else starts a real interpreter through `subprocess` unchanged: another executable, an
interpreter flag (``-I``, ``-X ...``), a stdin other than the caller's or /dev/null, or an
environment that differs from the preloaded one in a variable read while importing
(``KERAS_BACKEND``, ``KERAS_HOME``, ``PYTHONHASHSEED``, ``TF_CPP_*``, ...; see
`_IMPORT_TIME_ENV`; the few in `_EMULATED_ENV` are applied in the child instead).
``KERAS_SE_NO_PREFORK=1`` sends every command through `subprocess` (docs/development.md).
Tests whose subject is the interpreter's start (the install tests, "no TensorFlow imported",
the console scripts) use `subprocess` directly.

``start_new_session=True`` (the notebook kernels) gives the child its own session and process
group before its pid is returned, so a signal to the group reaches the child alone.

The preloaded interpreter is this file run as a script: ``python tests/prefork.py FD``, FD one
end of a ``SOCK_SEQPACKET`` socket pair over which it receives one JSON request per command
(with the child's three standard file descriptors, ``SCM_RIGHTS``) and answers ``{"pid": N}``,
later ``{"exit": N, "code": C}``.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

#: What the preloaded interpreter imports (what ``keras-se train/tune/export`` import besides
#: keras_se itself, whose code is always imported fresh in the child).
PRELOAD = (
    "numpy",
    "tensorflow",
    "keras",
    "sklearn.datasets",
    "sklearn.model_selection",
    "tensorboard.summary.v2",
    "keras_tuner",
)
#: Environment variables (exact names, or prefixes ending in ``_``/``*``) read while Python and
#: the preloaded libraries start: a command whose value differs from the preloaded
#: interpreter's runs in a real new interpreter.
_IMPORT_TIME_ENV = (
    "PYTHON*",
    "KERAS_BACKEND",
    "KERAS_HOME",
    "TF_CPP_*",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_USE_LEGACY_KERAS",
    "CUDA_*",
    "XLA_*",
    "JAX_*",
    "OMP_*",
    "MKL_*",
    "OPENBLAS_*",
    "LD_*",
    "HOME",
    "LANG",
    "LC_*",
    "MPLCONFIGDIR",
)
#: Emulated in the child rather than compared: unbuffered standard streams, the bytecode flag,
#: matplotlib's backend (`matplotlib.pyplot` is imported by Keras, its backend chosen at the
#: first figure), and ``PYTHONPATH`` when it names only this checkout's root (which holds no
#: preloaded module: its entries go after ``sys.path[0]``, where Python puts them).
_EMULATED_ENV = ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "MPLBACKEND", "PYTHONPATH")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISABLE_ENV = "KERAS_SE_NO_PREFORK"
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT


def _import_time_keys(env):
    keys = set()
    for key in env:
        if key in _EMULATED_ENV:
            continue
        for pattern in _IMPORT_TIME_ENV:
            if key == pattern or (pattern.endswith("*") and key.startswith(pattern[:-1])):
                keys.add(key)
    return keys


def _program(args):
    """``("module"|"code"|"script", target, argv_rest)`` for a command the preloaded
    interpreter can run, else None."""
    if not isinstance(args, (list, tuple)) or len(args) < 2 or args[0] != sys.executable:
        return None
    args = [os.fspath(a) for a in args]
    if args[1] in ("-m", "-c"):
        if len(args) < 3:
            return None
        return ("module" if args[1] == "-m" else "code", args[2], args[3:])
    if args[1].startswith("-"):  # an interpreter flag: -I, -X importtime, -u, ...
        return None
    return ("script", args[1], args[2:])


# ------------------------------------------------------------------------- client side
class _Server:
    """The preloaded interpreter, seen from the test process."""

    _instance = None
    _instance_lock = threading.Lock()
    #: Why the preloaded interpreter could not start (then every command uses subprocess).
    failed = None

    @classmethod
    def get(cls):
        with cls._instance_lock:
            if cls._instance is None or cls._instance.dead:
                cls._instance = cls()
            return cls._instance

    def __init__(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=self.env,
        )
        theirs.close()
        self.sock = ours
        self.dead = False
        self.replies = queue.Queue()
        self.exits = {}
        self.changed = threading.Condition()
        self.send_lock = threading.Lock()
        self.sock.settimeout(600)  # importing TensorFlow on a loaded machine: well under this
        try:
            ready = self._recv()
        except OSError:
            self.proc.kill()
            raise
        self.sock.settimeout(None)
        if ready != {"ready": True}:
            self.dead = True
            raise RuntimeError(f"the preloaded interpreter did not start: {ready!r}")
        threading.Thread(target=self._read, name="prefork-reader", daemon=True).start()

    def _recv(self):
        data = self.sock.recv(65536)
        return json.loads(data) if data else None

    def _read(self):
        while True:
            try:
                message = self._recv()
            except OSError:
                message = None
            if message is None:
                with self.changed:
                    self.dead = True
                    self.changed.notify_all()
                self.replies.put(None)
                return
            if "exit" in message:
                with self.changed:
                    self.exits[message["exit"]] = message["code"]
                    self.changed.notify_all()
            else:
                self.replies.put(message)

    def fork(self, request, fds):
        with self.send_lock:
            socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
            reply = self.replies.get(timeout=120)
        if reply is None or "pid" not in reply:
            raise RuntimeError(f"the preloaded interpreter failed to fork: {reply!r}")
        return reply["pid"]

    def wait(self, pid, timeout):
        with self.changed:
            if not self.changed.wait_for(lambda: pid in self.exits or self.dead, timeout):
                return None
            if pid not in self.exits:
                raise RuntimeError(f"the preloaded interpreter died while process {pid} ran")
            return self.exits[pid]


def _usable(args, env):
    disabled = os.environ.get(DISABLE_ENV, "") not in ("", "0")
    program = _program(args)
    if disabled or program is None or _Server.failed or not hasattr(socket, "send_fds"):
        return None
    try:
        server = _Server.get()
    except (OSError, RuntimeError) as err:  # the suite still runs, on fresh interpreters
        _Server.failed = err
        warnings.warn(
            f"tests/prefork.py: no preloaded interpreter ({err}); using subprocess", stacklevel=3
        )
        return None
    keys = _import_time_keys(env) | _import_time_keys(server.env)
    if any(env.get(k) != server.env.get(k) for k in keys):
        return None
    if _pythonpath(env) != _pythonpath(server.env) and not set(_pythonpath(env)) <= {ROOT}:
        return None
    return server, program


def _pythonpath(env):
    return [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


class ForkedProcess:
    """A `subprocess.Popen` look-alike for a child of the preloaded interpreter."""

    def __init__(self, server, pid, args, stdout, stderr):
        self._server, self.pid, self.args = server, pid, args
        self.stdout, self.stderr, self.stdin = stdout, stderr, None
        self.returncode = None
        self._outputs, self._readers = {}, None  # communicate(): what each reader thread read

    def poll(self):
        if self.returncode is None:
            self.returncode = self._server.wait(self.pid, 0)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.returncode = self._server.wait(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def communicate(self, input=None, timeout=None):
        if input is not None:
            raise ValueError("prefork.ForkedProcess has no stdin")
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._readers is None:
            self._readers = [
                threading.Thread(
                    target=lambda n=name, s=stream: self._outputs.__setitem__(n, s.read()),
                    daemon=True,
                )
                for name, stream in (("stdout", self.stdout), ("stderr", self.stderr))
                if stream is not None
            ]
            for thread in self._readers:
                thread.start()
        for thread in self._readers:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        return self._outputs.get("stdout"), self._outputs.get("stderr")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()


def Popen(
    args,
    *,
    env=None,
    cwd=None,
    stdin=None,
    stdout=None,
    stderr=None,
    text=False,
    start_new_session=False,
):
    """`subprocess.Popen(args, ...)`, forked from the preloaded interpreter when it can be."""
    env = dict(os.environ if env is None else env)
    usable = None if stdin not in (None, DEVNULL) else _usable(args, env)
    if usable is None:
        return subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=text,
            start_new_session=start_new_session,
        )
    server, program = usable
    close_after, ours = [], {}

    def target(spec, name, default_fd):
        if spec is None:
            return default_fd
        if spec == DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR)
            close_after.append(fd)
            return fd
        if spec == PIPE:
            read, write = os.pipe()
            close_after.append(write)
            ours[name] = open(read, "r" if text else "rb")
            return write
        if spec == STDOUT and name == "stderr":
            return None
        return spec if isinstance(spec, int) else spec.fileno()

    try:
        in_fd = target(stdin, "stdin", 0)
        out_fd = target(stdout, "stdout", 1)
        err_fd = target(stderr, "stderr", 2)
        if err_fd is None:
            err_fd = out_fd
        request = {
            "kind": program[0],
            "target": program[1],
            "argv": program[2],
            "cwd": os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd()),
            "env": env,
            "new_session": bool(start_new_session),
        }
        pid = server.fork(request, [in_fd, out_fd, err_fd])
    except BaseException:
        for stream in ours.values():
            stream.close()
        raise
    finally:
        for fd in close_after:
            os.close(fd)
    return ForkedProcess(server, pid, list(args), ours.get("stdout"), ours.get("stderr"))


def run(
    args,
    *,
    env=None,
    cwd=None,
    capture_output=False,
    text=False,
    timeout=None,
    stdout=None,
    stderr=None,
    check=False,
):
    """`subprocess.run(args, ...)`, forked from the preloaded interpreter when it can be."""
    if capture_output:
        stdout = stderr = PIPE
    proc = Popen(args, env=env, cwd=cwd, stdout=stdout, stderr=stderr, text=text)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:  # a timeout (or an interrupt) kills the child, as subprocess.run does
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = subprocess.CompletedProcess(list(args), proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result


# ------------------------------------------------------------------------- server side
def _serve(sock):
    """Forks one child per request; returns (request, fds) in the child only."""
    children = set()
    while True:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 22, 3)
            except OSError:
                data, fds = b"", []
            if not data:  # the test process is gone
                os._exit(0)
            request = json.loads(data)
            sys.stdout.flush()
            sys.stderr.flush()
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                sock.close()
                os.close(ready_r)
                if request["new_session"]:
                    os.setsid()
                os.close(ready_w)  # the parent answers once the child has its session
                return request, fds
            os.close(ready_w)
            os.read(ready_r, 1)  # EOF when the child closed its end
            os.close(ready_r)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            sock.send(json.dumps({"pid": pid}).encode())
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                code = os.waitstatus_to_exitcode(status)
                sock.send(json.dumps({"exit": pid, "code": code}).encode())


def _become(request, fds):
    """Turns the forked child into the requested ``python -m/-c/SCRIPT`` process."""
    import io
    import runpy

    for target_fd, fd in enumerate(fds):
        os.dup2(fd, target_fd, inheritable=True)
    for fd in set(fds):
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    env = request["env"]
    os.environ.clear()
    os.environ.update(env)
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    for fd, name in ((1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        raw = io.FileIO(fd, "w", closefd=False)
        binary = raw if unbuffered else io.BufferedWriter(raw)
        stream = io.TextIOWrapper(
            binary,
            encoding=old.encoding,
            errors=old.errors,
            line_buffering=name == "stderr" or os.isatty(fd),
            write_through=unbuffered,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=sys.stdout.encoding
    )
    if "matplotlib" in sys.modules and env.get("MPLBACKEND"):
        sys.modules["matplotlib"].rcParams["backend"] = env["MPLBACKEND"]
    import numpy as np

    np.random.seed()  # a new process draws new entropy; the fork copied the parent's state
    kind, target, rest = request["kind"], request["target"], request["argv"]
    sys.path[1:1] = [p for p in _pythonpath(env) if p not in sys.path]
    if kind == "module":
        sys.argv = ["-m", *rest]
        sys.path[0] = request["cwd"]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif kind == "code":
        sys.argv = ["-c", *rest]
        sys.path[0] = ""
        main = sys.modules["__main__"]
        for key in list(vars(main)):
            if key not in ("__builtins__", "__name__", "__loader__"):
                delattr(main, key)
        main.__spec__ = main.__file__ = None
        exec(compile(target, "<string>", "exec", dont_inherit=True), vars(main))
    else:
        sys.argv = [target, *rest]
        sys.path[0] = os.path.dirname(os.path.abspath(target))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    import importlib

    _sock = socket.socket(fileno=int(sys.argv[1]))
    for _name in PRELOAD:
        importlib.import_module(_name)
    _sock.send(json.dumps({"ready": True}).encode())
    _become(*_serve(_sock))
