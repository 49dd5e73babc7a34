"""The client libraries' suites for bench/driver_suites.py: where each comes from, what it needs,
how it is run, and its outcomes read from pytest's JUnit XML.

Versions: mysqlclient at the project's pin (pyproject.toml). PyMySQL's sdists since 1.0 ship only
``tests/test_auth.py`` (MySQL 8's sha256 / caching_sha2 users, which MariaDB lacks), so its suite
comes from 0.10.1, the last sdist with ``pymysql/tests``, run with that sdist's own ``pymysql``.
SQLAlchemy is no dependency of the project: the newest release when this was written, run from
its sdist's ``lib/`` over PyMySQL (the project's pin) and over mysqlclient.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable
LOAD_LOCAL_ROWS = 22749  # what PyMySQL's test_load_local counts
TEST_TIMEOUT_S = 60  # pytest-timeout, per test: a test that hangs fails, and the suite goes on


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    user: str
    password: str


@dataclass(frozen=True)
class Suite:
    """One suite: the sdist it lives in, the databases it expects, how to start it."""

    name: str
    requirement: str  # pip's NAME==VERSION
    databases: tuple[str, ...]
    command: Callable[[Path, Login], tuple[list[str], dict[str, str]]]  # (argv, env), cwd=src


@dataclass
class SuiteRun:
    suite: str
    target: str
    outcomes: dict[str, str] = field(default_factory=dict)  # test id → passed|failed|error|skipped
    note: str = ""

    def counts(self) -> Counter[str]:
        counts = Counter({"passed": 0, "failed": 0, "error": 0, "skipped": 0})
        counts.update(self.outcomes.values())
        return counts

    def as_json(self) -> dict[str, object]:
        return {
            "suite": self.suite,
            "target": self.target,
            "counts": dict(self.counts()),
            "note": self.note,
            "outcomes": self.outcomes,
        }


def _pymysql(src: Path, login: Login) -> tuple[list[str], dict[str, str]]:
    """PyMySQL's CI: databases test1 and test2, read from pymysql/tests/databases.json."""
    base = {"host": login.host, "port": login.port, "user": login.user, "passwd": login.password}
    databases = [
        {**base, "db": "test1", "use_unicode": True, "local_infile": True},
        {**base, "db": "test2"},
    ]
    tests = src / "pymysql" / "tests"
    (tests / "databases.json").write_text(json.dumps(databases))
    # test_load_local's file is not in the sdist: its 22,749 rows of two integers, made here.
    (tests / "data").mkdir(exist_ok=True)
    rows = "".join(f"{i},{i * 2}\n" for i in range(LOAD_LOCAL_ROWS))
    (tests / "data" / "load_local_data.txt").write_text(rows)
    return [PYTHON, "-m", "pytest", "pymysql/tests"], {}


def _mysqlclient(src: Path, login: Login) -> tuple[list[str], dict[str, str]]:
    """mysqlclient's CI: database mysqldb_test, the [MySQLdb-tests] group of the file that
    TESTDB names in tests/; the installed MySQLdb (the project's pin, the same version)."""
    (src / "tests" / "target.cnf").write_text(
        "[MySQLdb-tests]\n"
        f"host = {login.host}\nport = {login.port}\nuser = {login.user}\n"
        f"password = {login.password}\ndatabase = mysqldb_test\n"
        "default-character-set = utf8mb4\n"
    )
    return [PYTHON, "-m", "pytest", "tests"], {"TESTDB": "target.cnf"}


def _sqlalchemy(driver: str) -> Callable[[Path, Login], tuple[list[str], dict[str, str]]]:
    """SQLAlchemy's README.unittests.rst: database test, schemas test_schema(_2), --dburi."""

    def command(src: Path, login: Login) -> tuple[list[str], dict[str, str]]:
        uri = (
            f"mysql+{driver}://{login.user}:{login.password}@{login.host}:{login.port}"
            "/test?charset=utf8mb4"
        )
        tests = ["test/dialect/mysql", "test/dialect/test_suite.py", *SQLALCHEMY_SQL_TESTS]
        # Its pure-Python modules use an importable Cython as their shim, and need Cython 3.3;
        # the project's is older: this plugin hides it, so they take their own fallback.
        (src / "no_cython.py").write_text('import sys\n\nsys.modules["cython"] = None\n')
        return [PYTHON, "-m", "pytest", "-p", "no_cython", "--dburi", uri, *tests], {}

    return command


# The backend-agnostic suite's modules that run statements (the rest compile SQL only).
SQLALCHEMY_SQL_TESTS = (
    "test/sql/test_query.py",
    "test/sql/test_resultset.py",
    "test/sql/test_insert_exec.py",
    "test/sql/test_defaults.py",
    "test/sql/test_types.py",
)
SQLALCHEMY_DATABASES = ("test", "test_schema", "test_schema_2")
SUITES = (
    Suite("pymysql 0.10.1", "PyMySQL==0.10.1", ("test1", "test2"), _pymysql),
    Suite("mysqlclient 2.3.1", "mysqlclient==2.3.1", ("mysqldb_test",), _mysqlclient),
    Suite(
        "sqlalchemy 2.1.9 +pymysql",
        "SQLAlchemy==2.1.9",
        SQLALCHEMY_DATABASES,
        _sqlalchemy("pymysql"),
    ),
    Suite(
        "sqlalchemy 2.1.9 +mysqldb",
        "SQLAlchemy==2.1.9",
        SQLALCHEMY_DATABASES,
        _sqlalchemy("mysqldb"),
    ),
)


def fetch_sources(suites: list[Suite], cache_dir: Path) -> dict[str, Path]:
    """Each suite's unpacked sdist, downloaded once into ``cache_dir``."""
    sdists = cache_dir / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)
    sources = {}
    for suite in suites:
        name, _, version = suite.requirement.partition("==")
        archive = _find_sdist(sdists, name, version)
        if archive is None:
            subprocess.run(
                [
                    PYTHON,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--no-binary",
                    name,
                    "-d",
                    str(sdists),
                    suite.requirement,
                ],
                check=True,
            )
            archive = _find_sdist(sdists, name, version)
            assert archive is not None, f"pip saved no sdist for {suite.requirement}"
        sources[suite.name] = _unpacked(archive, cache_dir / "src")
    return sources


def _find_sdist(folder: Path, name: str, version: str) -> Path | None:
    wanted = f"{name}-{version}.tar.gz".lower()
    return next((p for p in folder.iterdir() if p.name.lower() == wanted), None)


def _unpacked(archive: Path, into: Path) -> Path:
    top = into / archive.name.removesuffix(".tar.gz")
    if not top.is_dir():
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
        top = next(p for p in into.iterdir() if p.name.lower() == top.name.lower())
    return top


def run_suite(
    suite: Suite, src: Path, target: str, login: Login, runs_dir: Path, timeout_s: float
) -> SuiteRun:
    """Runs the suite once (niced, in its own process group, killed past ``timeout_s``)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{suite.name}-{target}".replace(" ", "_").replace("+", "")
    junit, log = runs_dir / f"{stem}.xml", runs_dir / f"{stem}.log"
    junit.unlink(missing_ok=True)  # a timed-out run writes none: never read an older one
    argv, env = suite.command(src, login)
    _keep_pytest_config_inside(src)
    argv = [
        "nice",
        *argv,
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-q",
        "--tb=short",
        f"--junitxml={junit}",
        f"--timeout={TEST_TIMEOUT_S}",
    ]
    run = SuiteRun(suite.name, target)
    with log.open("w") as out:
        process = subprocess.Popen(
            argv,
            cwd=src,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own child's group
            process.wait()
            run.note = f"timed out after {timeout_s:.0f} s"
    if junit.exists():
        run.outcomes = read_junit(junit)
    elif not run.note:
        run.note = f"no results (exit {process.returncode}); see {log}"
    return run


def _keep_pytest_config_inside(src: Path) -> None:
    """pytest looks for its config upwards and would find this project's pyproject.toml (its
    filterwarnings = error turns the old suites' DeprecationWarnings into collection errors):
    a suite without a config of its own gets an empty one."""
    sections = {
        "pytest.ini": "[pytest]",
        "pyproject.toml": "[tool.pytest.ini_options]",
        "tox.ini": "[pytest]",
        "setup.cfg": "[tool:pytest]",
    }
    for name, section in sections.items():
        path = src / name
        if path.exists() and section in path.read_text(errors="replace"):
            return
    (src / "pytest.ini").write_text("[pytest]\n")


def read_junit(path: Path) -> dict[str, str]:
    """test id → outcome; a test that failed in its call and errored in teardown is an error."""
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(
                child.tag, outcome
            )
        if rank[outcome] >= rank[outcomes.get(test, "passed")]:
            outcomes[test] = outcome
    return outcomes
