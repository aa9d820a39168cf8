"""iommap's exceptions.

Every failure is an :class:`Error` with a ``reason`` string, and also an
instance of the built-in exception a Python programmer would catch for it
(``ValueError`` for a closed handle, ``IndexError`` out of bounds,
``OSError`` with ``errno`` for failed system calls, ...).  The C core builds
its exceptions through :func:`os_error` and the classes below.
"""

from __future__ import annotations

import errno as _errno


class Error(Exception):
    """Base class of every exception iommap raises; ``reason`` names the failure.

    Each is also an instance of the built-in exception you would catch for it:

    - `"badarg"`, a wrong type: `BadArgumentTypeError`, a `TypeError`.
    - `"badarg"`, a wrong value (unknown mode, hint or sync mode; a negative
      offset, length or size; nesting too deep; more pieces or offsets than
      memory could hold): `BadArgumentValueError`, a `ValueError`.
    - `"closed"`, any method but `close` on a closed handle, `len()`, `with`:
      `ClosedError`, a `ValueError`.
    - `"out_of_bounds"`, the range passes the end of the mapping:
      `OutOfBoundsError`, an `IndexError`.
    - `"sigbus"`, the pages behind the range vanished (the file shrank, an I/O
      error): `SigbusError`, an `OSError` with `errno.EFAULT`.
    - `"enoent"`, `"eacces"`, `"enospc"`, ...: a system call failed (or the
      handle's mode refuses the call: `"eacces"`); the reason is the lowercase
      errno name. A `SystemCallError` subclass, an `OSError` with `.errno`, and
      the matching subclass (`FileNotFoundError`, `PermissionError`, ...).

    Messages name the operation and the system call: `open: open() failed: No
    such file or directory: 'x.bin'`. Errors Python raises before iommap runs (a
    wrong number of arguments, pickling a handle) are plain `TypeError`s.

    **Your exceptions are yours.** An exception raised by your code that iommap
    calls (`__fspath__`, `__index__`, an iterator or sequence given as offsets,
    `__len__`, a buffer exporter's `__buffer__`), `KeyboardInterrupt` included,
    comes out of iommap unchanged. `badarg` is only what iommap decides: a wrong
    type or value. Refusals of the built-in exporters (a released `memoryview`,
    a closed `mmap`) are `badarg`.

    Every iommap exception pickles and unpickles to the same class with the same
    `reason`, `errno`, `strerror`, `filename` and message, so a failing
    `multiprocessing` or `ProcessPoolExecutor` worker gives its parent the error
    it raised.
    """

    reason: str = "error"


class BadArgumentTypeError(Error, TypeError):
    """An argument has the wrong type (``reason`` is ``"badarg"``)."""

    reason = "badarg"


class BadArgumentValueError(Error, ValueError):
    """An argument has the right type but a value iommap refuses (``"badarg"``)."""

    reason = "badarg"


class ClosedError(Error, ValueError):
    """The handle is closed, or closing (``"closed"``)."""

    reason = "closed"


class OutOfBoundsError(Error, IndexError):
    """The requested range passes the end of the mapping (``"out_of_bounds"``)."""

    reason = "out_of_bounds"


class SystemCallError(Error, OSError):
    """A system call failed; ``reason`` is the lowercase errno name.

    Each errno gets a subclass that also derives from the matching built-in
    ``OSError`` subclass (``FileNotFoundError`` for ``enoent``, ...).  These
    subclasses are made on demand, so pickle cannot find them by name: an
    instance pickles as its errno name and arguments, and unpickles to the
    same subclass (the one this process has for that name).
    """

    def __reduce__(self) -> tuple[object, ...]:
        reduced = OSError.__reduce__(self)
        assert isinstance(reduced, tuple)  # OSError's is (class, args[, state])
        if type(self) is not _os_error_classes.get(self.errno if self.errno is not None else -1):
            return reduced  # a class pickle can find by name
        state = reduced[2] if len(reduced) > 2 else None
        return (_restore_os_error, (self.reason, self.errno, reduced[1]), state)


class SigbusError(Error, OSError):
    """The pages behind the range vanished: the file shrank, or an I/O error.

    ``reason`` is ``"sigbus"`` and ``errno`` is ``errno.EFAULT``.  The handle
    stays usable.
    """

    reason = "sigbus"


for _cls in (
    Error,
    BadArgumentTypeError,
    BadArgumentValueError,
    ClosedError,
    OutOfBoundsError,
    SystemCallError,
    SigbusError,
):
    _cls.__module__ = "iommap"  # shown as iommap.ClosedError in tracebacks
del _cls

_os_error_classes: dict[int, type[SystemCallError]] = {}


def _os_error_class(code: int) -> type[SystemCallError]:
    cls = _os_error_classes.get(code)
    if cls is None:
        name = _errno.errorcode.get(code, f"E{code}")
        builtin = type(OSError(code, ""))
        bases = (SystemCallError,) if builtin is OSError else (SystemCallError, builtin)
        cls = type(name + "Error", bases, {"reason": name.lower(), "__module__": "iommap"})
        _os_error_classes[code] = cls
    return cls


def _restore_os_error(reason: str, code: int, args: tuple[object, ...]) -> SystemCallError:
    """Unpickles a SystemCallError subclass instance (see its ``__reduce__``).

    The errno name decides the class, so an error pickled on one system
    unpickles as the same error on another even where the numbers differ."""
    local = getattr(_errno, reason.upper(), None)
    if isinstance(local, int) and _errno.errorcode.get(local, "").lower() == reason:
        if local != code and args and args[0] == code:
            args = (local, *args[1:])
        code = local
    return _os_error_class(code)(*args)


def os_error(code: int, message: str, filename: object = None) -> SystemCallError:
    """Return the exception for errno ``code``: an Error and the built-in subclass."""
    cls = _os_error_class(code)
    if filename is None:
        return cls(code, message)
    return cls(code, message, filename)
