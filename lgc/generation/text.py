"""Text in and out of token ids with a Hugging Face tokenizer.json (the `tokenizers` library),
for `lgc generate --prompt` and lgc serve's text_input/text_output."""
from __future__ import annotations

import os

from ..errors import InputError, LgcError


class TextCodec:
    """encode(text) -> ids and decode(ids) -> text with the tokenizer in a tokenizer.json."""

    def __init__(self, path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise LgcError("text prompts need the `tokenizers` package: pip install tokenizers") from None
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InputError(f"tokenizer file {path!r} does not exist")
        try:
            self.tokenizer = Tokenizer.from_file(path)
        except Exception as e:                    # noqa: BLE001 - the library's own message
            raise InputError(f"tokenizer file {path!r} is not a tokenizer.json: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        self.path = path

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise InputError("the text prompt must be a string")
        return list(self.tokenizer.encode(text).ids)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])


def tokenizer_beside(model_path) -> str | None:
    """tokenizer.json in the model's folder, if there is one (as Hugging Face repos keep it)."""
    if not isinstance(model_path, (str, os.PathLike)):
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))), "tokenizer.json")
    return path if os.path.isfile(path) else None
