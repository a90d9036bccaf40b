"""The LGC_* compile switches: read once into backends.settings.Settings, each by its name."""
import re
from dataclasses import fields
from pathlib import Path

from lgc.backends.settings import Settings, current_settings, env_name, use_settings
from lgc.compiler import Options

ROOT = Path(__file__).resolve().parent.parent


def test_each_switch_is_read_from_the_variable_its_comment_names():
    src = (ROOT / "lgc" / "backends" / "settings.py").read_text()
    for f in fields(Settings):
        documented = re.search(rf"^\s+{f.name}: bool = True\s+# (LGC_\w+):", src, re.M)
        assert documented and documented.group(1) == env_name(f.name), f.name
        assert getattr(Settings.from_env({env_name(f.name): "0"}), f.name) is False
        assert getattr(Settings.from_env({env_name(f.name): "1"}), f.name) is True


def test_every_variable_the_docs_name_is_a_setting():
    """docs and README name LGC_<SWITCH>=0 for comparisons: each is a field (not a variable
    read somewhere else, or misspelt)."""
    runtime_vars = {"LGC_DEVICE", "LGC_CACHE", "LGC_CACHE_DIR", "LGC_CACHE_MAX_MB", "LGC_CACHE_BINARIES",
                    "LGC_CACHE_COMPILED", "LGC_TUNE_DB", "LGC_SERVE_TOKEN"}
    names = {env_name(f.name) for f in fields(Settings)}
    text = " ".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    for var in set(re.findall(r"\b(LGC_[A-Z_0-9]+)=0", text)) - runtime_vars:
        assert var in names, f"{var} is documented but no Settings field reads it"


def test_active_settings_and_cache_keys(monkeypatch):
    monkeypatch.setenv("LGC_FUSE", "0")
    assert current_settings().fuse is False                  # outside a compile: the environment
    with use_settings(Settings()):
        assert current_settings().fuse is True               # inside: the compile's own
    assert Options(settings=Settings()).key() != Options(settings=Settings(fuse=False)).key()
    assert Settings().key() == "default" and Settings(gpu_split_k=False).key() == "off:gpu_split_k"
