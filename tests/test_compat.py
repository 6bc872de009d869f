"""The private Lightning members genzoo relies on (``genzoo.compat``) still exist in the installed Lightning."""

import lightning

from genzoo.compat import PRIVATE_MEMBERS, missing_private_members


def test_every_private_lightning_member_we_use_still_exists():
    missing = missing_private_members()
    assert not missing, (f"Lightning {lightning.__version__} no longer has {', '.join(missing)}: adapt the function "
                         "in zoo/compat.py that uses it (its purpose is listed in PRIVATE_MEMBERS)")


def test_the_check_names_a_removed_member(monkeypatch):
    owner, name, _ = next(member for member in PRIVATE_MEMBERS if member[1] == "_save_last_checkpoint")
    monkeypatch.delattr(owner, name)
    assert missing_private_members() == [f"{owner.__module__}.{owner.__qualname__}.{name}"]
