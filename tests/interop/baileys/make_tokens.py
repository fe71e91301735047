"""Write wacrypto/wire/tokens.py from the token tables of Baileys' WABinary (run fetch.sh first).

    python tests/interop/baileys/make_tokens.py

The tables are protocol data (WhatsApp's dictionaries of frequent strings), so every implementation
carries the same ones; tests/interop/test_binary_baileys.py checks that ours still equal Baileys'.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[2] / "wacrypto" / "wire" / "tokens.py"


def baileys_tables() -> tuple[list[str], list[list[str]], str]:
    js = "const c=require('./vendor/WABinary/constants.js');" \
         "process.stdout.write(JSON.stringify([c.SINGLE_BYTE_TOKENS,c.DOUBLE_BYTE_TOKENS]))"
    single, double = json.loads(subprocess.run(["node", "-e", js], cwd=HERE, check=True, capture_output=True).stdout)
    version = (HERE / "vendor" / ".version").read_text().strip()
    return single, double, version


def render(single: list[str], double: list[list[str]], version: str) -> str:
    lic = (HERE / "vendor" / "LICENSE").read_text().strip()
    lines = [
        '"""WhatsApp\'s binary-stanza token dictionaries (data, not code).',
        "",
        f"Provenance: the tables of Baileys {version} (npm ``baileys``, lib/WABinary/constants.js), written",
        "here by tests/interop/baileys/make_tokens.py; tests/interop/test_binary_baileys.py checks they",
        "still equal Baileys'. Baileys' licence notice, which covers these tables:",
        "",
        *("    " + ln if ln else "" for ln in lic.splitlines()),
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        "# index = the byte that stands for the string; index 0, the empty string, shares byte 0 with",
        "# LIST_EMPTY, which in a string position also reads as the empty string",
        "SINGLE_BYTE_TOKENS: Final[tuple[str, ...]] = (",
        *(f"    {json.dumps(t)}," for t in single),
        ")",
        "",
        "# DOUBLE_BYTE_TOKENS[d][i] is written as the bytes (DICTIONARY_0 + d, i)",
        "DOUBLE_BYTE_TOKENS: Final[tuple[tuple[str, ...], ...]] = (",
    ]
    for table in double:
        lines.append("    (")
        lines.extend(f"        {json.dumps(t)}," for t in table)
        lines.append("    ),")
    lines.append(")")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(*baileys_tables()))
    print(f"wrote {OUT}")
