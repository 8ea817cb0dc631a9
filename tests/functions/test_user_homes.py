"""Users' homes as the functions run them: the Files client of ``make_homes`` and owner records in the table.

The share is the emulator's Azure Files data plane (the real
``azure-storage-file-share`` client, as ``make_homes`` builds it from the app
settings), the owner records a real Azurite table.
"""

from __future__ import annotations

import inspect

import pytest
from azure.core.exceptions import ResourceExistsError
from fn_support import base_env

from acaspawner.naming import home_folder, legacy_home_folder
from functions.homes import AzureFilesHomes, HomeFolders, make_homes
from functions.settings import Settings
from functions.user_homes import HomeOwners, HomeTaken, UserHomes
from local.emulator.files import FileServiceThread

ACCOUNT, SHARE = "sthomes", "homes"


@pytest.fixture
def files(tmp_path):
    with FileServiceThread(tmp_path / "files", state_dir=tmp_path / "state") as service:
        service.share_dir(ACCOUNT, SHARE, create=True)
        yield service


@pytest.fixture
def share(files):
    return files.share_dir(ACCOUNT, SHARE)


@pytest.fixture
def folders(files) -> AzureFilesHomes:
    """The share as the functions reach it: ``make_homes`` from the app settings (emulator token and CA)."""
    settings = Settings.from_environ(base_env(ACA_HOME_FILES_ACCOUNT_URL=files.account_url(ACCOUNT),
                                              ACA_HOME_SHARE_NAME=SHARE, ACA_HOME_FILES_TOKEN="emulator",
                                              ACA_HOME_FILES_CA_BUNDLE=str(files.ca_bundle)))
    homes = make_homes(settings)
    assert isinstance(homes, AzureFilesHomes)
    return homes


@pytest.fixture
def homes(folders, table) -> UserHomes:
    return UserHomes(folders, HomeOwners(table, "hub-test"))


def test_every_method_of_the_share_runs_against_the_files_api(folders, share, files):
    """ensure, exists, move, delete: the whole HomeFolders interface, through the real client."""
    methods = {name for name, _ in inspect.getmembers(HomeFolders, inspect.isfunction) if not name.startswith("_")}
    assert methods == {"ensure", "exists", "move", "delete"}
    folders.ensure("alice-1/work")
    assert folders.exists("alice-1") and folders.exists("alice-1/work") and not folders.exists("bob-2")
    (share / "alice-1" / "work" / "notes.ipynb").write_text("{}")
    # a home lent to a warm server and back: one rename each way, the files with it
    folders.ensure("slots/ws-1")
    folders.move("alice-1", "slots/ws-1/home")
    assert (share / "slots" / "ws-1" / "home" / "work" / "notes.ipynb").read_text() == "{}"
    assert not folders.exists("alice-1")
    folders.move("slots/ws-1/home", "alice-1")
    folders.delete("alice-1")
    assert not (share / "alice-1").exists() and not folders.exists("alice-1")
    assert {"CreateDirectory", "GetDirectoryProperties", "DeleteDirectory", "ListDirectoriesAndFiles",
            "DeleteFile", "RenameDirectory"} <= set(files.stats["operations"]), files.stats["operations"]


@pytest.mark.parametrize("path", ["", "/", ".", "a/../..", "a//b"])
def test_the_share_root_is_never_anyones_folder(folders, share, path):
    (share / "someone").mkdir()
    for action in (folders.delete, folders.ensure, folders.exists):
        with pytest.raises(ValueError, match="not a folder below the share's root"):
            action(path)
    assert (share / "someone").is_dir()


def test_a_file_where_the_folder_should_be_is_an_error_not_a_home(folders, share):
    (share / "alice-1").write_text("not a folder")
    with pytest.raises(ResourceExistsError):
        folders.ensure("alice-1")


def test_a_new_user_gets_a_128_bit_folder_recorded_as_theirs(homes, share, table):
    assert homes.prepare("alice") == home_folder("alice")
    assert (share / home_folder("alice")).is_dir()
    assert homes.owners.owner(home_folder("alice")) == "alice"
    assert homes.prepare("alice") == home_folder("alice")  # again: the same folder, nothing else made
    assert [p.name for p in share.iterdir()] == [home_folder("alice")]


def test_a_home_from_before_keeps_serving_its_user(homes, share):
    (share / legacy_home_folder("carol")).mkdir()
    (share / legacy_home_folder("carol") / "thesis.tex").write_text("kept")
    assert homes.prepare("carol") == legacy_home_folder("carol")
    assert homes.owners.owner(legacy_home_folder("carol")) == "carol"
    assert not (share / home_folder("carol")).exists()
    assert homes.prepare("carol") == legacy_home_folder("carol")  # every start after, too


def test_a_returning_user_is_served_from_one_read_of_their_record(homes, table, monkeypatch):
    """The usual start: the user's 128-bit folder is recorded as theirs, so the older name is not looked at."""
    homes.prepare("dora")
    looked_up: list[str] = []
    record = homes.owners.record
    monkeypatch.setattr(homes.owners, "record", lambda folder: looked_up.append(folder) or record(folder))
    monkeypatch.setattr(homes.folders, "exists", lambda folder: pytest.fail(f"looked for {folder}"))
    assert homes.prepare("dora") == home_folder("dora")
    assert looked_up == [home_folder("dora")]


def test_names_that_share_a_slug_get_their_own_folders(homes, share):
    names = ["bob", "Bob.", "bob!", "böb", "bob中"]
    made = [homes.prepare(name) for name in names]
    assert len(set(made)) == len(names) and all(m.startswith("bob-") for m in made)
    assert {homes.owners.owner(m) for m in made} == set(names)


def test_a_folder_recorded_for_someone_else_is_never_mounted(homes, share):
    """A user whose folder (by either naming) is recorded as another's gets no home, never theirs."""
    homes.owners.claim(legacy_home_folder("mallory"), "alice")  # as if alice's old folder had mallory's name
    (share / legacy_home_folder("mallory")).mkdir()
    assert homes.prepare("mallory") == home_folder("mallory")  # not the recorded one
    homes.owners.table.delete_entity(homes.owners.partition, home_folder("mallory"))
    homes.owners.claim(home_folder("mallory"), "alice")
    with pytest.raises(HomeTaken, match="recorded for another user"):
        homes.prepare("mallory")


def test_remove_takes_only_the_users_own_recorded_folders(homes, share):
    for user in ("alice", "bob"):
        homes.prepare(user)
        (share / home_folder(user) / "work.txt").write_text(user)
    (share / legacy_home_folder("alice")).mkdir()  # unrecorded: not provably alice's, so left alone
    assert homes.remove("alice") == [home_folder("alice")]
    assert sorted(p.name for p in share.iterdir()) == sorted([home_folder("bob"), legacy_home_folder("alice")])
    assert homes.owners.owner(home_folder("alice")) is None and homes.owners.owner(home_folder("bob")) == "bob"
    assert homes.remove("alice") == []
