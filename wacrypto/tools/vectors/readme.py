"""The ``README.md`` that ``generate`` writes next to the vector files: the format in prose."""

from __future__ import annotations

from typing import Any

from wacrypto.tools.vectors.common import SUITE_VERSION

__all__ = ["readme"]

_FORMAT = """\
Each `<family>.json` is one JSON object in the style of Project Wycheproof (`schema.json` is its JSON
Schema, draft 2020-12):

- `suite`, `suiteVersion`, `family`, `algorithm`; `provenance` (generator and version, seed, RNG, how
  the values were made); `notes` (one sentence per flag); `numberOfTests`;
- `testGroups`: each with a `type`, a `procedure` (what to do with a case) and group fields, and
  `tests`: each with `tcId` (1.. per file), `comment`, `result` and `flags`.

`result` is `valid` (accept, with exactly the given outputs), `invalid` (reject) or `acceptable`
(either; the flags' notes say which policy decides, and an implementation that accepts must give the
given output). All binary values are lowercase hex.

Signal families (xeddsa, x3dh, ratchet, invalid_messages, sender_keys, fingerprint) are written in the
terms of the JSON-lines peer protocol (`docs/peer-protocol.md`): `setup.new_identity` are the fields of
`new_identity` (private keys given, so every implementation ends up with the same keys),
`setup.import_session` the `import_session` requests (a libsignal `RecordStructure` taken
mid-conversation), `setup.group_process` the `group_process` requests; `steps` are `decrypt` (or
`group_decrypt`, see `op`) requests in order, each with `expect`: `plaintext` (must decrypt to
`plaintext`), `reject` (must fail; `error` names the class wacrypto raises, for information) or
`either`. A step with `probe: true` is a genuine message sent after a rejected one: it must still
decrypt (state safety; `wacrypto conformance` runs these, `wacrypto vectors check` skips them).

Media, noise and binary cases are self-contained known answers (keys, inputs, outputs); their
`procedure` says what to compute.
"""


def readme(files: dict[str, dict[str, Any]]) -> str:
    rows = []
    for fam, data in files.items():
        groups = ", ".join(sorted({g["type"] for g in data["testGroups"]}))
        results = [t["result"] for g in data["testGroups"] for t in g["tests"]]
        rows.append(f"| `{fam}.json` | {data['algorithm']} | {groups} | {results.count('valid')} | "
                    f"{results.count('invalid')} | {results.count('acceptable')} |")
    seed = next(iter(files.values()))["provenance"]["seed"] if files else ""
    return "\n".join([
        f"# wacrypto interoperability test vectors (suite version {SUITE_VERSION})",
        "",
        f"Made by `wacrypto vectors generate` (seed `{seed}`); the same seed gives the same bytes. Check an "
        "implementation with `wacrypto vectors check --peer CMD DIR` and its state safety with "
        "`wacrypto conformance --peer CMD DIR`, CMD being any peer that speaks the JSON-lines peer protocol.",
        "",
        "| file | algorithm | groups | valid | invalid | acceptable |",
        "|---|---|---|---:|---:|---:|",
        *rows,
        "",
        "## Format",
        "",
        _FORMAT,
    ])
