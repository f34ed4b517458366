"""project.env, the one file a fork edits: the names every tool builds on are checked at load.

A name that cannot be a bucket, an image or a key stops every command with one line, before
anything is named after it (rename_project's rule; www/project.py owns it).
"""

import pytest

from tests.helpers import copy_repository, manage_copy
from www import project

GOOD = (
    'PROJECT_NAME=acme-shop\nAWS_REGION=eu-west-1\nENVIRONMENTS="stage prod"\n'
    "STAGE_BUCKET=acme-shop-stage\nPROD_BUCKET=acme-shop\n"
    "STAGE_INSTANCE_TYPE=t3.small\nPROD_INSTANCE_TYPE=t3.medium\nIMAGE_REGISTRY=ecr\n"
    "APP_UID=10001\nAPP_PORT=8000\nCONTAINERS_ROOT=/containers\nDB_WAIT_TIMEOUT=60\n"
)


def load(tmp_path, text):
    path = tmp_path / "project.env"
    path.write_text(text)
    return project.load(path)


def test_a_good_file_loads(tmp_path):
    loaded = load(tmp_path, GOOD)
    assert loaded.name == "acme-shop"
    assert list(loaded.environments) == ["stage", "prod"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Acme_Shop", "use lowercase letters, digits and single hyphens"),
        ("acme shop", "use lowercase letters, digits and single hyphens"),
        ("acme;touch${IFS}x", "use lowercase letters, digits and single hyphens"),
        ("class", "it is a Python keyword"),
        ("sthree-shop", "uses a prefix or suffix S3 reserves"),
    ],
)
def test_a_project_name_rename_project_would_refuse_is_refused_at_load(tmp_path, name, reason):
    text = GOOD.replace("PROJECT_NAME=acme-shop", f"PROJECT_NAME='{name}'")
    with pytest.raises(project.ProjectFileError) as raised:
        load(tmp_path, text)
    message = str(raised.value)
    assert message.startswith(f"project.env: invalid project name {name!r}: ")
    assert reason in message and "\n" not in message


@pytest.mark.parametrize("name", ["Stage", "qa-eu", "stage_2", "2nd", "../prod"])
def test_an_environment_name_that_cannot_form_keys_and_names_is_refused(tmp_path, name):
    text = GOOD.replace('ENVIRONMENTS="stage prod"', f'ENVIRONMENTS="stage {name}"')
    with pytest.raises(project.ProjectFileError) as raised:
        load(tmp_path, text)
    assert str(raised.value) == (
        f"project.env: invalid environment name {name!r}: use lowercase letters and digits, "
        "starting with a letter (it forms the keys <ENV>_BUCKET and <ENV>_INSTANCE_TYPE, "
        "S3 keys and AWS resource names)"
    )


def test_a_missing_key_is_named(tmp_path):
    text = GOOD.replace('ENVIRONMENTS="stage prod"', 'ENVIRONMENTS="stage prod qa"')
    with pytest.raises(project.ProjectFileError, match="^project.env: set QA_BUCKET$"):
        load(tmp_path, text)
    with pytest.raises(project.ProjectFileError, match="^project.env: set ENVIRONMENTS, e.g."):
        load(tmp_path, GOOD.replace('ENVIRONMENTS="stage prod"', 'ENVIRONMENTS=""'))


def test_manage_py_stops_at_a_bad_project_env_with_one_line(tmp_path):
    fork = copy_repository(tmp_path / "fork")
    env_file = fork / "project.env"
    env_file.write_text(env_file.read_text().replace("PROJECT_NAME=webapp", "PROJECT_NAME=Web_App"))
    result = manage_copy(fork, "check")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: project.env: invalid project name 'Web_App': use lowercase")


def test_fleet_keys_are_optional_and_read_per_environment(tmp_path):
    loaded = load(
        tmp_path,
        GOOD
        + 'PROD_LOAD_BALANCER=yes\nPROD_DOMAINS="www.example.com example.com"\n'
        + "PROD_MIN_INSTANCES=2\nPROD_MAX_INSTANCES=5\nPROD_SUBNETS='subnet-1 subnet-2'\n",
    )
    stage, prod = loaded.environment("stage"), loaded.environment("prod")
    assert (stage.load_balanced, stage.domains, stage.min_instances, stage.max_instances) == (
        False,
        (),
        1,
        2,
    )
    assert prod.load_balanced and prod.domains == ("www.example.com", "example.com")
    assert (prod.min_instances, prod.max_instances) == (2, 5)
    assert prod.subnets == ("subnet-1", "subnet-2")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "PROD_LOAD_BALANCER=true\n",
            "project.env: PROD_LOAD_BALANCER='true': set it to yes or no",
        ),
        (
            "PROD_MAX_INSTANCES=many\n",
            "project.env: PROD_MAX_INSTANCES='many': set it to a whole number",
        ),
        (
            "PROD_MIN_INSTANCES=4\nPROD_MAX_INSTANCES=3\n",
            "project.env: PROD_MIN_INSTANCES=4 and PROD_MAX_INSTANCES=3: need 1 <= min <= max",
        ),
        (
            "PROD_MIN_INSTANCES=3\nPROD_MAX_INSTANCES=4\nPROD_ROLL_AT_ONCE=3\n",
            "project.env: PROD_ROLL_AT_ONCE=3: set it from 1 to 2 (PROD_MIN_INSTANCES=3): "
            "one instance must serve during a roll",
        ),
        (
            "PROD_MIN_INSTANCES=5\nPROD_MAX_INSTANCES=6\nPROD_ROLL_AT_ONCE=0\n",
            "project.env: PROD_ROLL_AT_ONCE=0: set it from 1 to 4 (PROD_MIN_INSTANCES=5): "
            "one instance must serve during a roll",
        ),
    ],
)
def test_bad_fleet_values_are_one_line(tmp_path, lines, message):
    with pytest.raises(project.ProjectFileError) as raised:
        load(tmp_path, GOOD + lines)
    assert str(raised.value) == message
