"""What a person types, accepted in a normal form or refused with a message naming the field."""
from __future__ import annotations

import pytest

from llmtwin.domain import DocumentKind, Platform
from twin_web import validation
from twin_web.validation import InputError


@pytest.mark.parametrize(("platform", "typed", "kept"), [
    ("linkedin", "https://www.linkedin.com/in/ada-lovelace", "https://www.linkedin.com/in/ada-lovelace"),
    ("medium", "https://medium.com/@ada", "https://medium.com/@ada"),
    ("medium", "https://ada.medium.com", "https://ada.medium.com"),
    ("substack", "ada.substack.com", "https://ada.substack.com"),
    ("github", " github.com/ada ", "https://github.com/ada"),
    ("x", "https://twitter.com/ada", "https://twitter.com/ada"),
    ("blog", "http://ada.example.org/feed.xml", "http://ada.example.org/feed.xml"),
    ("GitHub", "https://github.com/ada/engine", "https://github.com/ada/engine"),
])
def test_profile_links_of_each_platform_are_accepted(platform, typed, kept):
    link = validation.profile_link(platform, typed, allow_private_hosts=False)
    assert (link.platform, link.url, link.cadence_minutes) == (Platform(platform.lower()), kept, None)


@pytest.mark.parametrize(("platform", "typed", "field", "says"), [
    ("myspace", "https://myspace.com/ada", "platform", "Choose one of the platforms"),
    ("github", "https://gitlab.com/ada", "url", "not a GitHub link"),
    ("linkedin", "https://medium.com/@ada", "url", "not a LinkedIn link"),
    ("github", "https://github.com/", "url", "Add the account"),
    ("x", "https://x.com", "url", "Add the account"),
    ("blog", "ftp://ada.example.org/", "url", "https://"),
    ("blog", "https://localhost-without-dot", "url", "no valid web address"),
    ("blog", "", "url", "Paste the link"),
    ("blog", "http://127.0.0.1:8080/", "url", "private or local address"),
    ("blog", "http://10.1.2.3/", "url", "private or local address"),
])
def test_bad_profile_links_are_refused_with_a_reason(platform, typed, field, says):
    with pytest.raises(InputError) as refused:
        validation.profile_link(platform, typed, allow_private_hosts=False)
    assert refused.value.field == field
    assert says in refused.value.message


def test_loopback_sites_are_accepted_for_any_platform_when_private_hosts_are_allowed():
    link = validation.profile_link("medium", "http://127.0.0.1:8765/@ada", allow_private_hosts=True)
    assert link.url == "http://127.0.0.1:8765/@ada"


def test_local_files_are_accepted_when_they_exist(tmp_path):
    export = tmp_path / "Shares.csv"
    export.write_text("Date,ShareCommentary\n")
    link = validation.profile_link("linkedin", export.as_uri(), allow_private_hosts=False)
    assert link.url == export.resolve().as_uri()
    with pytest.raises(InputError, match="There is no file or folder"):
        validation.profile_link("linkedin", (tmp_path / "missing.zip").as_uri(), allow_private_hosts=False)
    with pytest.raises(InputError, match="on this server"):
        validation.profile_link("linkedin", "file://otherhost/export.zip", allow_private_hosts=False)


@pytest.mark.parametrize(("typed", "minutes"), [(None, None), ("", None), ("0", None), ("60", 60), (1440, 1440)])
def test_cadence_is_minutes_or_nothing(typed, minutes):
    assert validation.cadence_minutes(typed) == minutes


@pytest.mark.parametrize("typed", ["soon", "-5", "999999", "1.5"])
def test_bad_cadence_is_refused(typed):
    with pytest.raises(InputError) as refused:
        validation.cadence_minutes(typed)
    assert refused.value.field == "cadence_minutes"


def test_twin_names():
    assert validation.twin_name("  Ada   Lovelace ") == "Ada Lovelace"
    assert validation.twin_id_for("Ada Lovelace") == "ada-lovelace"
    for bad, says in [("", "Give the twin a name"), ("李雷", "at least one Latin letter"), ("a" * 81, "under 80")]:
        with pytest.raises(InputError, match=says):
            validation.twin_name(bad)


def test_archive_names_are_made_safe_and_must_look_like_exports():
    assert validation.archive_filename("../../etc/Basic_LinkedInDataExport 2024.zip") == \
        "Basic_LinkedInDataExport_2024.zip"
    assert validation.archive_filename("C:\\Users\\ada\\twitter-archive.zip") == "twitter-archive.zip"
    assert validation.archive_filename(".hidden.tar.gz") == "hidden.tar.gz"
    with pytest.raises(InputError, match="does not look like an export archive"):
        validation.archive_filename("holiday.exe")


def test_writing_requests():
    wanted = validation.writing_request(" Write about shipping ", "https://a.example/x\n https://b.example/y",
                                        "ARTICLE")
    assert (wanted.prompt, wanted.links, wanted.format) == (
        "Write about shipping", ["https://a.example/x", "https://b.example/y"], DocumentKind.ARTICLE)
    for prompt, links, kind, field in [("", "", "post", "prompt"), ("hi", "", "poem", "format"),
                                       ("hi", "not-a-link", "post", "links"),
                                       ("hi", [f"https://e.example/{i}" for i in range(6)], "post", "links")]:
        with pytest.raises(InputError) as refused:
            validation.writing_request(prompt, links, kind)
        assert refused.value.field == field
