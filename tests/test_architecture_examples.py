"""The worked examples of docs/architecture.md (a protocol kind and an agent kind) run as written: every
```python block of the page is executed, in order, in one namespace; their own asserts check the outcomes
(computed by hand in the text: gas = gas units · (base fee + tip), health = collateral · price · threshold / debt).
"""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def test_the_page_has_both_worked_examples():
    text = PAGE.read_text()
    assert "## Worked example: a protocol kind" in text and "## Worked example: an agent kind" in text
    assert len(python_blocks(text)) >= 4


def test_the_worked_examples_of_the_architecture_page_run():
    namespace: dict = {"__name__": "architecture_examples"}
    for i, block in enumerate(python_blocks(PAGE.read_text())):
        exec(compile(block, f"{PAGE.name}[python block {i}]", "exec"), namespace)
    # what the blocks built is there to inspect (and the last block's asserts ran)
    assert namespace["whale"].sold_block >= 600
    assert namespace["shop"].debt[namespace["alice"]] == 0.0
