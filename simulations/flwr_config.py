"""Write simulations/configs/default.yaml into pyproject.toml's [tool.flwr.app.config].

    python simulations/flwr_config.py

Run it after changing the default experiment or the config schema, so that
``flwr run .`` keeps running what ``python simulations/run.py`` runs (a test
checks that they agree).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "[tool.flwr.app.config."


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from fedsec.config import Config

    cfg = Config.load(ROOT / "simulations" / "configs" / "default.yaml")
    pyproject = ROOT / "pyproject.toml"
    text = pyproject.read_text()
    head = text[: text.index(MARKER)] if MARKER in text else text.rstrip() + "\n\n"
    tables = [
        f"{MARKER}{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
        for section, values in cfg.to_dict().items()
    ]
    pyproject.write_text(head + "\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
