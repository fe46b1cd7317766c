"""The UI's field definitions come from the schemas; the committed files must not drift."""

from __future__ import annotations

from pathlib import Path

from truenas_vmware_coord import schemas
from truenas_vmware_coord.schemas import ui_fields

GENERATED = Path(__file__).resolve().parents[2] / "ui_extension" / "generated"


def test_committed_field_definitions_match_the_schemas():
    for name, text in ui_fields.render().items():
        committed = (GENERATED / name).read_text()
        assert committed == text, (f"ui_extension/generated/{name} is stale: run python -m "
                                   "truenas_vmware_coord.schemas.ui_fields ui_extension/generated")


def test_every_policy_field_is_a_schema_field_with_its_words():
    schema = schemas.load_schema("policy")
    fields = {f["name"]: f for f in ui_fields.form("policy")["fields"]}
    regex = schema["properties"]["match"]["properties"]["name_regex"]
    assert fields["match.name_regex"]["label"] == regex["title"]
    assert fields["match.name_regex"]["help"] == regex["description"]
    assert fields["ladder"]["widget"] == "ordered_choices"
    assert fields["ladder"]["choices"] == ["quiesce", "memory", "crash", "power_off", "suspend", "exclude",
                                        "fsfreeze", "pause"]
    assert fields["match.has_blocker"]["widget"] == "multiselect"
    assert fields["name"]["required"] and not fields["match.custom_attribute.key"]["required"]
    assert fields["options.shutdown_timeout_seconds"]["default"] == 300
    assert "id" not in fields


def test_the_webui_form_carries_the_endpoint_settings():
    form = ui_fields.truenas_webui_form()
    names = {f["name"] for f in form["fieldSets"][0]["config"]}
    assert {"vmware_coord.tls.sha256_fingerprint", "vmware_coord.port",
            "vmware_coord.tls.skip_verification"} <= names
    port = next(f for f in form["fieldSets"][0]["config"] if f["name"] == "vmware_coord.port")
    assert port["validation"] == {"minimum": 1, "maximum": 65535} and port["value"] == 443
