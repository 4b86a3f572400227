"""--object in every command that takes it: a definition qemu-img refuses
ends the command before anything is opened, with qemu-img's message and
exit code (1, compare's 2), and `--object help` lists the types (exit 0).
The oracle runs the same command line in the same directory."""

import pytest

import instar_testlib as tl

COMMANDS = {
    "info": ["info", "{obj}", "a.qcow2"],
    "check": ["check", "{obj}", "a.qcow2"],
    "map": ["map", "{obj}", "a.qcow2"],
    "compare": ["compare", "{obj}", "a.qcow2", "a.qcow2"],
    "convert": ["convert", "{obj}", "-O", "raw", "a.qcow2", "out.raw"],
    "resize": ["resize", "{obj}", "a.qcow2", "2M"],
    "dd": ["dd", "{obj}", "if=a.qcow2", "of=out.raw"],
    "create": ["create", "{obj}", "-f", "qcow2", "out.qcow2", "1M"],
}
OBJECTS = {
    "bogus-type": "bogus,id=x",
    "bad-id": "secret,id=0x,data=abc",
    "secret-no-data": "secret,id=s0",
    "help": "help",
}


@pytest.mark.parametrize("obj", OBJECTS.values(), ids=OBJECTS.keys())
@pytest.mark.parametrize("cmd", COMMANDS.keys())
def test_object_definition(instar, tmp_path, cmd, obj):
    results = []
    for who, run in (("oracle", tl.run_oracle), ("instar", instar.run)):
        d = tmp_path / who
        d.mkdir()
        tl.qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "1M", cwd=d)
        argv = [a.replace("{obj}", "--object") for a in COMMANDS[cmd]]
        argv.insert(argv.index("--object") + 1, obj)
        results.append(run(argv, cwd=d))
        assert not (d / "out.raw").exists() and not (d / "out.qcow2").exists(), "the command went on"
    oracle, r = results
    assert (oracle.returncode == 0) == (obj == "help"), oracle.describe()
    assert r.returncode == oracle.returncode, r.describe() + "\n" + oracle.describe()
    assert r.stdout == oracle.stdout, r.describe() + "\n" + oracle.describe()
    assert r.stderr == oracle.stderr, r.describe() + "\n" + oracle.describe()
