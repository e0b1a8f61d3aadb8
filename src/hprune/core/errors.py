"""User-facing errors: one sentence that says what is wrong and what to do."""


class HpruneError(Exception):
    """A problem with the user's input or environment, not a bug in hprune.

    The CLI prints the message as a single line and exits 1, without a traceback.
    """


def is_out_of_memory(err: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (or an older torch's RuntimeError saying so), told apart
    without importing torch."""
    return type(err).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(err)


def out_of_memory_message(hint: str | None = None, err: BaseException | None = None) -> str:
    """One sentence for an out-of-memory: `hint` names the command's knobs (e.g. a command
    module's `out_of_memory_hint(args)`). Where torch's message (`err`) says that at least
    1 GiB was reserved by its caching allocator but unallocated, and expandable segments are
    off, the sentence leads with that knob: the memory was there, but in pieces too small."""
    knobs = hint or "lower --batch-size or use a GPU with more memory"
    spare = unallocated_gib(str(err)) if err is not None else None
    if spare is not None and spare >= 1.0 and not expandable_segments_on():
        return (f"the GPU ran out of memory with {spare:.1f} GiB reserved but unallocated (fragmented); re-run with "
                f"expandable_segments:True added to PYTORCH_CUDA_ALLOC_CONF (e.g. "
                f"PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True), or {knobs}.")
    return f"the GPU ran out of memory; {knobs}."


def unallocated_gib(message: str) -> float | None:
    """GiB that torch's out-of-memory message reports as "reserved by PyTorch but unallocated"
    (the caching allocator's fragmentation, c10/cuda/CUDACachingAllocator.cpp); None if absent."""
    import re

    found = re.search(r"([0-9]+(?:\.[0-9]+)?) (GiB|MiB|KiB|bytes) is reserved by PyTorch but unallocated", message)
    if found is None:
        return None
    scale = {"GiB": 1.0, "MiB": 2.0**-10, "KiB": 2.0**-20, "bytes": 2.0**-30}[found.group(2)]
    return float(found.group(1)) * scale


def expandable_segments_on() -> bool:
    """Whether PYTORCH_CUDA_ALLOC_CONF or PYTORCH_ALLOC_CONF (newer torch's name for it) turns on
    expandable segments (read by torch at the first allocation)."""
    import os

    conf = ",".join(os.environ.get(name, "") for name in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"))
    return "expandable_segments:true" in conf.replace(" ", "").lower()




def os_error_message(err: OSError, given: dict[str, str] | None = None) -> str | None:
    """One sentence for an OSError that names a path: what failed, on which path,
    and the fix; None for an OSError without a path (a bug: left to the traceback).

    `given` maps each path-valued argument as --help names it ("--out", "MODEL")
    to the value typed. The sentence then names that argument, and shows its
    path rather than a parent of it or the hidden temporary sibling a save was
    writing to.
    """
    import errno
    import os
    from pathlib import Path

    raw = err.filename2 if err.filename2 is not None else err.filename
    if raw is None:
        return None
    path, option = _user_path(os.fsdecode(raw), given or {})
    if option:
        choose = f"choose {'an' if option[2:3] in tuple('aeiou') else 'a'} {option}"  # "an --out", "a --grid"
    if isinstance(err, PermissionError):
        if os.path.exists(path) and not os.access(path, os.R_OK):
            return f"cannot read {path}: permission denied; make it readable or pass a copy you can read."
        fix = f"{choose} you can write to" if option else "make its folder writable or run as a user who can write there"
        return f"cannot write {path}: permission denied; {fix}."
    if isinstance(err, (NotADirectoryError, FileExistsError)):
        blocker = next((p for p in (Path(path), *Path(path).parents) if p.exists() and not p.is_dir()), None)
        fix = f"{choose} that is a folder or does not exist yet" if option else "move that file away"
        if blocker == Path(path):
            return f"{path} is a file, not a folder; {fix}."
        if blocker is not None:
            fix = f"{choose} inside a folder" if option else "move that file away"
            return f"cannot write {path}: {blocker} is a file, not a folder; {fix}."
        if isinstance(err, FileExistsError):
            fix = f"{choose} that does not exist yet, or remove it" if option else "remove it"
            return f"{path} already exists; {fix}."
    if isinstance(err, IsADirectoryError):
        fix = f"{choose} that is a file path" if option else "move that folder away"
        return f"{path} is a folder, where a file was expected; {fix}."
    if isinstance(err, FileNotFoundError):
        return f"{path} does not exist; check the path (and that its parent folder exists)."
    if err.errno == errno.ENOSPC:
        fix = f"{choose} on another disk" if option else "free some space"
        return f"cannot write {path}: no space left on the device; {fix}."
    if err.errno == errno.EROFS:
        fix = f"{choose} you can write to" if option else "write somewhere else"
        return f"cannot write {path}: the file system is read-only; {fix}."
    return f"{path}: {err.strerror or err}; check that path and its permissions."


def _user_path(path: str, given: dict[str, str]) -> tuple[str, str | None]:
    """(the path to show, the argument it belongs to, or None). A path inside an
    argument's path is shown as it is; a parent of it, or a temporary sibling
    (.NAME.tmp-PID, NAME.tmp), as the argument's own path. --out is tried first."""
    import os

    here = os.path.abspath(path)
    for name in sorted(given, key=lambda name: name != "--out"):
        typed = os.fsdecode(given[name])
        value = os.path.abspath(typed)
        if here == value or here.startswith(value.rstrip(os.sep) + os.sep):
            return path, name
        base = os.path.basename(value)
        if value.startswith(here.rstrip(os.sep) + os.sep) or (
                os.path.dirname(here) == os.path.dirname(value)
                and os.path.basename(here).startswith((f".{base}.tmp", f"{base}.tmp"))):
            return typed, name
    return path, None
