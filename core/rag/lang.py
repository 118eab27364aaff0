"""Which language a text is in, as far as retrieval and prompts care: Chinese (``"zh"``) or English (``"en"``)."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> str:
    """``"zh"`` when the text has a fair share of CJK characters (a Chinese question with English terms such as
    "RoPE 位置编码" counts as Chinese), else ``"en"``.

    >>> detect_language("什么是 Transformer？"), detect_language("What is attention?")
    ('zh', 'en')
    """
    cjk = len(_CJK.findall(text))
    latin_words = len(re.findall(r"[A-Za-z]+", text))
    if cjk == 0:
        return "en"
    return "zh" if cjk >= max(2, latin_words) or cjk >= len(_LATIN.findall(text)) / 4 else "en"
