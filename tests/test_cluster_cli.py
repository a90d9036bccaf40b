"""lgc deploy / lgc cluster: one-line errors without Ray, without a cluster, without devices.
No Ray instance is started here."""
import pytest

from lgc.cluster.connect import ClusterError


def test_no_worker_with_devices_and_no_ray(monkeypatch):
    from lgc.cluster import connect as c

    class NoDevices:
        @staticmethod
        def cluster_resources():
            return {"CPU": 8.0}
    with pytest.raises(ClusterError, match="no Ray worker advertises lgc_device"):
        c.device_capacity(NoDevices)
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(ClusterError, match=r"Ray is not installed: pip install 'lgc\[cluster\]'"):
        c.require_ray()


def test_cli_errors_are_one_line(capsys):
    pytest.importorskip("ray")
    from lgc.tools.cli import main
    assert main(["deploy", "nothing.lgc", "--address", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lgc: error: no Ray cluster reachable at 127.0.0.1:1") and "\n" not in err
    assert main(["cluster", "status", "--address", "127.0.0.1:1"]) == 1
    assert "no Ray cluster reachable" in capsys.readouterr().err


def test_help_and_argument_errors(capsys):
    from lgc.tools.cli import main
    with pytest.raises(SystemExit) as e:
        main(["deploy", "--help"])
    assert e.value.code == 0 and "--replicas" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["cluster", "status", "--help"])
    assert "--address" in capsys.readouterr().out
    assert main(["deploy", "m.lgc", "--replicas", "0"]) == 1
    assert "--replicas must be at least 1" in capsys.readouterr().err


def test_a_compiled_artifact_is_not_split(tmp_path):
    from lgc.cluster.deploy import default_name, stage_artifacts
    from lgc.errors import InputError
    art = tmp_path / "m.lgc"
    art.write_bytes(b"x")
    with pytest.raises(InputError, match="cannot be split"):
        stage_artifacts(art, stages=2)
    assert stage_artifacts(art)[0] == [art]
    assert default_name(art) == "m"
    with pytest.raises(InputError, match="does not exist"):
        stage_artifacts(tmp_path / "none.onnx")


def test_onnx_split_by_stages_and_by_plan(tmp_path):
    """`lgc deploy model.onnx --stages 2` and `--plan plan.json` compile stage artifacts (no
    Ray needed for that part); the plan's replica counts come along."""
    from lgc.cluster.deploy import stage_artifacts
    from lgc.distributed.cost import CostModel
    from lgc.distributed.graphs import load_graph
    from lgc.distributed.planner import plan, save_plan
    from lgc.distributed.shard import load_stages, run_stages
    from lgc.distributed.specs import parse_workers
    from tests.conftest import make_small_model
    import numpy as np
    import lgc
    model = tmp_path / "small.onnx"
    make_small_model(model)
    paths, replicas = stage_artifacts(model, stages=2, out_dir=tmp_path / "by_stages")
    assert len(paths) == 2 and replicas is None
    x = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)
    want = lgc.compile(str(model)).run({"x": x})
    got = run_stages(load_stages(tmp_path / "by_stages"), {"x": x})
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
    p = plan(CostModel(load_graph(model)), parse_workers("cpu:1GB*3"), stages=2)
    save_plan(p, tmp_path / "plan.json", "small.onnx")
    paths, replicas = stage_artifacts(model, plan=str(tmp_path / "plan.json"), out_dir=tmp_path / "by_plan")
    assert len(paths) == 2 and replicas == [len(s.replicas) for s in p.stages] and sum(replicas) == 3
