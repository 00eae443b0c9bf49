from __future__ import annotations

import json

import numpy as np
import pytest

from hubroute.errors import DataError, RegistryError
from hubroute.hub import ModelCard, Registry


def card(i: int, domain: str = "d") -> ModelCard:
    return ModelCard(model_id=f"org/m{i}", family=f"f{i // 2}", domain=domain, text=f"model {i}", created_at=i)


def test_rows_are_append_only_and_stable():
    reg = Registry([card(0), card(1)])
    assert reg.add([card(2), card(3)]) == [2, 3]
    assert reg.row("org/m1") == 1
    reg.retire(["org/m1"])
    reg.add([card(4)])
    assert reg.model_ids == [f"org/m{i}" for i in range(5)]
    assert reg.row("org/m1") == 1 and reg.row("org/m4") == 4


def test_retire_and_activate_are_masks():
    reg = Registry([card(i) for i in range(4)])
    v = reg.version
    reg.retire(["org/m0", "org/m2"])
    assert reg.active_mask.tolist() == [False, True, False, True]
    assert reg.n_active() == 2 and len(reg) == 4
    assert reg.status("org/m0") == "retired"
    reg.activate(["org/m2"])
    assert reg.active_mask.tolist() == [False, True, True, True]
    assert reg.version > v


def test_active_mask_is_a_copy():
    reg = Registry([card(0)])
    m = reg.active_mask
    m[0] = False
    assert reg.n_active() == 1


def test_duplicates_rejected_atomically():
    reg = Registry([card(0)])
    with pytest.raises(RegistryError, match="already registered"):
        reg.add([card(1), card(0)])
    assert len(reg) == 1  # card 1 was not added either
    with pytest.raises(RegistryError, match="twice"):
        reg.add([card(5), card(5)])
    assert reg.add([card(0), card(1)], skip_existing=True) == [0, 1]
    assert len(reg) == 2


def test_unknown_ids_raise():
    reg = Registry([card(0)])
    with pytest.raises(RegistryError, match="unknown model id"):
        reg.retire(["nope"])
    with pytest.raises(RegistryError):
        reg.row("nope")


def test_save_load_round_trip(tmp_path):
    reg = Registry([card(i, domain=f"d{i % 3}") for i in range(6)])
    reg.retire(["org/m3"])
    path = reg.save(tmp_path / "reg.jsonl")
    back = Registry.load(path)
    assert back.cards == reg.cards
    assert np.array_equal(back.active_mask, reg.active_mask)


def test_load_reports_file_and_line(tmp_path):
    reg = Registry([card(0), card(1)])
    path = reg.save(tmp_path / "reg.jsonl")
    lines = path.read_text().splitlines()
    lines[2] = '{"model_id": "x", broken'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"reg\.jsonl:3: invalid JSON"):
        Registry.load(path)
    lines[2] = json.dumps({"model_id": "x", "family": "f", "domain": "d", "bogus": 1})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"reg\.jsonl:3: bad model card"):
        Registry.load(path)


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = Registry([card(0)]).save(tmp_path / "reg.jsonl")
    before = path.read_text()
    with pytest.raises(RegistryError, match="extra"):  # a card that cannot be written is refused
        Registry([ModelCard("org/x", "f", "d", extra={"obj": object()})])
    other = Registry([card(0), card(1)])

    def disk_full(self):
        raise OSError("no space left on device")

    monkeypatch.setattr(ModelCard, "to_dict", disk_full)
    with pytest.raises(OSError):
        other.save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["reg.jsonl"]


def test_cards_with_unstorable_text_are_refused_and_nothing_is_added():
    reg = Registry([card(0)])
    for bad in (
        ModelCard("org/\udc00", "f", "d"),
        ModelCard("org/x", "f", "d", text="a \udc00"),
        ModelCard("org/x\tid", "f", "d"),
        ModelCard("org/x", "f", "Audio\nASR"),
        ModelCard("  ", "f", "d"),
    ):
        with pytest.raises(RegistryError):
            reg.add([card(5), bad])
    assert len(reg) == 1


def test_a_card_dict_holds_every_field_and_copies_extra():
    from dataclasses import fields

    card = ModelCard("lab/m", "fam", "Audio Audio Classification", "text", 7, {"tags": ["a"]})
    d = card.to_dict()
    assert list(d) == [f.name for f in fields(ModelCard)] and ModelCard.from_dict(d) == card
    d["extra"]["tags"].append("b")
    assert card.extra == {"tags": ["a"]}
