"""The README is the front door: its claims table matches the registry and its example works pasted."""

from __future__ import annotations

import re
from pathlib import Path

from verify import readme
from verify.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_claims_table_is_current():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.render(text) == text, "README claims table is stale: run `python -m verify.readme`"


def test_user_claim_example_works_when_pasted(tmp_path, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"Save this as `my_claims.py`.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) <= 20
    (tmp_path / "my_claims.py").write_text(block)
    rc = main(["run", "mine.*", "--claims", str(tmp_path / "my_claims.py"), "--out", str(tmp_path), "--seed", "0",
               "--no-tables", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert main(["mutants", "mine.*", "--claims", str(tmp_path / "my_claims.py"), "--seed", "0"]) == 0
