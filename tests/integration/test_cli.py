"""The command line's contract: help, version, usage errors and exit codes."""
import subprocess


def run(bin_, *args):
    return subprocess.run([bin_, *args], capture_output=True, text=True, timeout=10)


def test_help_lists_verbs(clusterctl_bin):
    r = run(clusterctl_bin, "--help")
    assert r.returncode == 0
    assert "usage: clusterctl" in r.stdout
    assert "version" in r.stdout


def test_version(clusterctl_bin):
    r = run(clusterctl_bin, "--version")
    assert r.returncode == 0
    assert r.stdout.startswith("clusterctl 0.")
    assert run(clusterctl_bin, "version").stdout == r.stdout


def test_no_args_is_usage_error(clusterctl_bin):
    r = run(clusterctl_bin)
    assert r.returncode == 2
    assert "usage:" in r.stderr


def test_unknown_verb_is_usage_error(clusterctl_bin):
    r = run(clusterctl_bin, "frobnicate")
    assert r.returncode == 2
    assert "unknown verb 'frobnicate'" in r.stderr
    assert "usage:" in r.stderr
    assert r.stdout == ""


def test_help_for_a_verb(clusterctl_bin):
    r = run(clusterctl_bin, "help", "version")
    assert r.returncode == 0
    assert "usage: clusterctl version" in r.stdout
    r = run(clusterctl_bin, "help", "nope")
    assert r.returncode == 2


def test_verb_rejects_extra_args(clusterctl_bin):
    r = run(clusterctl_bin, "version", "extra")
    assert r.returncode == 2
