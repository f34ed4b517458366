"""rename_project: a copy of the repository, renamed, follows the new name and passes its tests."""

import json
import os
import subprocess
import sys

import boto3
import pytest

from tests.helpers import PARENT_ONLY_ENV, copy_repository, manage_copy
from www import config, project, rename

# Tests of the renamed copy that need neither Docker nor Postgres.
FAST_TESTS = ["tests/test_config_overlay.py"]


def run(cwd, *args, env=None):
    clean = {k: v for k, v in os.environ.items() if k not in PARENT_ONLY_ENV}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def snapshot(root):
    return {name: (root / name).read_bytes() for name in ("project.env", "pyproject.toml")}


@pytest.fixture
def fork(tmp_path):
    return copy_repository(tmp_path / "fork")


@pytest.fixture(scope="module")
def renamed_fork(tmp_path_factory):
    fork = copy_repository(tmp_path_factory.mktemp("renamed") / "fork")
    result = manage_copy(fork, "rename_project", "acme-shop")
    assert result.returncode == 0, result.stderr
    return fork


def test_rename_rewrites_the_project_file_and_what_derives_from_it(fork):
    before = (fork / "project.env").read_text()
    result = manage_copy(fork, "rename_project", "acme-shop")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Rewrote project.env: PROJECT_NAME webapp -> acme-shop",
        "Rewrote project.env: STAGE_BUCKET webapp-stage -> acme-shop-stage",
        "Rewrote project.env: PROD_BUCKET webapp -> acme-shop",
        "Rewrote project.env: PROD_DOMAINS webapp.example.com -> acme-shop.example.com",
        "Rewrote pyproject.toml: [project] name webapp -> acme-shop",
        "Renamed project webapp -> acme-shop.",
    ]
    # AWS is not asked (no credentials needed): what the old name may have left is named
    assert result.stderr.splitlines() == [
        "warning: AWS resources made under webapp keep that name and no command finds them "
        "after the rename: buckets webapp-stage, webapp, security groups and IAM roles "
        "webapp-<env>-*, ECR repository webapp-release, instances tagged Project=webapp. If "
        "setup_aws ran under webapp, terminate those instances and delete those resources (or "
        "keep the name)."
    ]
    # Only those four lines changed; comments and the other values are as they were.
    expected = (
        before.replace("PROJECT_NAME=webapp\n", "PROJECT_NAME=acme-shop\n")
        .replace("STAGE_BUCKET=webapp-stage\n", "STAGE_BUCKET=acme-shop-stage\n")
        .replace("PROD_BUCKET=webapp\n", "PROD_BUCKET=acme-shop\n")
        .replace('PROD_DOMAINS="webapp.example.com"\n', "PROD_DOMAINS=acme-shop.example.com\n")
    )
    assert (fork / "project.env").read_text() == expected
    assert '[project]\nname = "acme-shop"\n' in (fork / "pyproject.toml").read_text()


def test_dry_run_says_what_would_change_and_changes_nothing(fork):
    before = snapshot(fork)
    result = manage_copy(fork, "rename_project", "acme-shop", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Would rewrite project.env: PROJECT_NAME webapp -> acme-shop",
        "Would rewrite project.env: STAGE_BUCKET webapp-stage -> acme-shop-stage",
        "Would rewrite project.env: PROD_BUCKET webapp -> acme-shop",
        "Would rewrite project.env: PROD_DOMAINS webapp.example.com -> acme-shop.example.com",
        "Would rewrite pyproject.toml: [project] name webapp -> acme-shop",
    ]
    assert snapshot(fork) == before


def test_second_run_with_the_same_name_is_a_no_op(renamed_fork):
    before = snapshot(renamed_fork)
    result = manage_copy(renamed_fork, "rename_project", "acme-shop")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Project acme-shop exists, unchanged.\n"
    assert snapshot(renamed_fork) == before


SHOW_PROJECT = """
import json
from django.conf import settings
from www import project
p = project.load()
print(json.dumps({
    "settings_name": settings.PROJECT.name,
    "images": [p.image(kind, "1.0") for kind in ("base", "dev", "release")],
    "buckets": {name: env.bucket for name, env in p.environments.items()},
    "config_uris": {name: env.config_uri for name, env in p.environments.items()},
}))
"""


def test_images_buckets_and_settings_follow_the_new_name(renamed_fork):
    result = manage_copy(renamed_fork, "shell", "-v", "0", "-c", SHOW_PROJECT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "settings_name": "acme-shop",
        "images": ["acme-shop-base:1.0", "acme-shop-dev:1.0", "acme-shop-release:1.0"],
        "buckets": {"stage": "acme-shop-stage", "prod": "acme-shop"},
        "config_uris": {
            "stage": "s3://acme-shop-stage/config/stage.py",
            "prod": "s3://acme-shop/config/prod.py",
        },
    }


def test_stage_config_template_stores_files_in_the_renamed_bucket(aws, renamed_fork, tmp_path):
    ssm = boto3.client("ssm")
    for name in ("secret-key", "database-password"):  # the renamed project's secrets path
        ssm.put_parameter(Name=f"/acme-shop/stage/{name}", Value="s" * 50, Type="SecureString")
    template = (renamed_fork / "deploy/aws/config/stage.py").read_text()
    filled = tmp_path / "stage.local.py"
    filled.write_text(
        config.PLACEHOLDER.sub(lambda m: "5432" if "PORT" in m[1] else "x" * 50, template)
    )
    result = manage_copy(
        renamed_fork,
        "diffsettings",
        env={"DJANGO_CONFIG_URI": str(filled), "AWS_ENDPOINT_URL": aws.url},
    )
    assert result.returncode == 0, result.stderr
    storages = next(line for line in result.stdout.splitlines() if line.startswith("STORAGES = "))
    assert storages.count("'bucket_name': 'acme-shop-stage'") == 2
    assert "webapp" not in result.stdout


@pytest.mark.parametrize(
    ("name", "line"),
    [
        (
            "Acme_Shop",
            "CommandError: invalid project name 'Acme_Shop': use lowercase letters, digits and "
            "single hyphens, starting with a letter (it names S3 buckets and Docker images, and "
            "with '-' as '_' a Python identifier)",
        ),
        (
            "a" * 60,
            f"CommandError: invalid project name '{'a' * 60}': STAGE_BUCKET '{'a' * 60}-stage' "
            "has 66 characters, S3 allows 3 to 63",
        ),
    ],
)
def test_bad_name_fails_with_one_line_and_changes_nothing(fork, name, line):
    before = snapshot(fork)
    result = manage_copy(fork, "rename_project", name)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [line]
    assert snapshot(fork) == before


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ab", "bucket 'ab' has 2 characters, S3 allows 3 to 63"),
        ("9lives", "use lowercase letters"),  # not a Python identifier
        ("acme--shop", "use lowercase letters"),  # '__' would be a Docker separator, not a name
        ("-acme", "use lowercase letters"),
        ("acme-", "use lowercase letters"),
        ("acme.shop", "use lowercase letters"),  # a bucket may hold dots, a module name not
        ("acme shop", "use lowercase letters"),
        ("", "use lowercase letters"),
        ("class", "it is a Python keyword"),
        ("sthree-shop", "uses a prefix or suffix S3 reserves"),
        ("shop-s3alias", "uses a prefix or suffix S3 reserves"),
    ],
)
def test_names_that_cannot_be_a_bucket_image_or_identifier_are_refused(name, reason):
    with pytest.raises(rename.InvalidName, match=f"^invalid project name {name!r}: .*") as raised:
        rename.check_name(name)
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name", ["acme", "acme-shop", "shop2", "a1-b2-c3", "x" * 57])
def test_good_names_pass(name):
    rename.check_name(name)


def test_a_bucket_chosen_by_hand_is_kept(tmp_path):
    (tmp_path / "project.env").write_text(
        "PROJECT_NAME=webapp\nENVIRONMENTS='stage prod qa'\n"
        "STAGE_BUCKET=legacy-assets  # chosen by hand\nPROD_BUCKET=webapp\n"
        "QA_BUCKET=webapp-qa-eu\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        '[tool.x]\nname = "webapp"\n[project]\nname = "my-dist"\n'
    )
    old, changes = rename.rename(tmp_path, "acme-shop")
    assert old == "webapp"
    assert [str(change) for change in changes] == [
        "project.env: PROJECT_NAME webapp -> acme-shop",
        "project.env: PROD_BUCKET webapp -> acme-shop",
        "project.env: QA_BUCKET webapp-qa-eu -> acme-shop-qa-eu",
    ]
    assert (tmp_path / "project.env").read_text() == (
        "PROJECT_NAME=acme-shop\nENVIRONMENTS='stage prod qa'\n"
        "STAGE_BUCKET=legacy-assets  # chosen by hand\nPROD_BUCKET=acme-shop\n"
        "QA_BUCKET=acme-shop-qa-eu\n"
    )
    # Another table's name and a distribution name chosen by hand are not the project's.
    assert (tmp_path / "pyproject.toml").read_text() == (
        '[tool.x]\nname = "webapp"\n[project]\nname = "my-dist"\n'
    )


def test_fast_tests_pass_in_the_renamed_fork(renamed_fork):
    result = run(
        renamed_fork,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--rootdir={renamed_fork}",
        *FAST_TESTS,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
    assert " failed" not in result.stdout.splitlines()[-1]


def test_domains_follow_the_name_only_where_a_label_is_the_name(tmp_path):
    (tmp_path / "project.env").write_text(
        "PROJECT_NAME=webapp\nENVIRONMENTS='stage prod'\nSTAGE_BUCKET=webapp-stage\n"
        "PROD_BUCKET=webapp\nSTAGE_DOMAINS=stage.webapp.example.org\n"
        'PROD_DOMAINS="www.shop.example.com webapp.example.com"\n'
    )
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "webapp"\n')
    _, changes = rename.rename(tmp_path, "acme")
    assert "project.env: STAGE_DOMAINS stage.webapp.example.org -> stage.acme.example.org" in [
        str(c) for c in changes
    ]
    values = project.parse_env_file((tmp_path / "project.env").read_text())
    assert values["PROD_DOMAINS"] == "www.shop.example.com acme.example.com"
    assert values["STAGE_DOMAINS"] == "stage.acme.example.org"
