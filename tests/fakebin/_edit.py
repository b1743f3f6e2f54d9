"""What the fake coding agents do to the task: one idea, then fixes, like a tiny real agent would."""

import pathlib


def edit(prompt: str, files: list[str] | None = None) -> str:
    """Edit solve.py in the current folder following the prompt; return the description."""
    path = pathlib.Path("solve.py")
    if files is not None and "solve.py" not in files:
        raise SystemExit("solve.py was not given to edit")
    source = path.read_text()
    if "# Fix this crash" in prompt:
        path.write_text(source.replace("{scor:", "{score:"))
        return "use the right variable name"
    if "RATE = 0.3" in source or "RATE 0.1 -> 0.3" in prompt:
        path.write_text(source.replace("WIDTH = 4", "WIDTH = 6"))
        return "WIDTH 4 -> 6"
    path.write_text(source.replace("RATE = 0.1", "RATE = 0.3").replace("{score:", "{scor:"))
    return "RATE 0.1 -> 0.3"
