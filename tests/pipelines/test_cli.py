import subprocess
import sys


def test_a_reader_that_leaves_early_is_not_an_error(make_project):
    # `lambdaslim validate FILE | true`: the pipe closes before the output is written.
    file = make_project("  - kind: export_onnx\n")
    cmd = f"{sys.executable} -m lambdaslim.cli validate {file} | true; echo ${{PIPESTATUS[0]}}"
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "0"
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr
