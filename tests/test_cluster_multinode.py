"""Deployment over several Ray nodes, simulated on this machine with ray.cluster_utils.Cluster:
actors spread by the lgc_device resource, device slots per node, a node lost and replaced."""
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from lgc.cluster.deployment import Deployment  # noqa: E402
from tests.test_cluster_deploy import mlp_artifacts, mlp_weights, numpy_mlp, requests  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"lgc_device": 2}, "include_dashboard": False,
        "object_store_memory": 200 * 2**20})
    worker = c.add_node(num_cpus=1, resources={"lgc_device": 2}, object_store_memory=200 * 2**20)
    c.wait_for_nodes()
    ray.init(address=c.address, namespace="lgc", log_to_driver=False)
    yield c, worker
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    w = mlp_weights(3)
    return w, mlp_artifacts(tmp_path_factory.mktemp("mlp"), w)


def _answers(dep):
    return [a for row in dep.health(timeout=5) for a in row]


def test_actors_spread_over_nodes_by_device_units(cluster, mlp):
    w, paths = mlp
    dep = Deployment.create([paths["s0"], paths["s1"]], name="spread", replicas=2, detached=False)
    try:
        answers = _answers(dep)
        assert all(a is not None for a in answers)
        by_node = {}
        for a in answers:
            by_node.setdefault(a["node_id"], []).append(a["slot"])
        assert len(by_node) == 2                                   # 4 units needed, 2 per node
        assert all(sorted(s) == [0, 1] for s in by_node.values())  # distinct slots on each node
        for x in requests(6, seed=7):
            np.testing.assert_allclose(dep.infer({"x": x})["y"], numpy_mlp(x, w), rtol=1e-5, atol=1e-5)
    finally:
        dep.shutdown()


@pytest.mark.slow
def test_a_lost_node_is_replaced(cluster, mlp):
    """Remove the worker node: its actors die and the deployment is not ready (or runs on the
    survivors); add a node: Ray restarts them there and every answer is right again."""
    c, worker = cluster
    w, paths = mlp
    dep = Deployment.create([paths["s0"], paths["s1"]], name="nodeloss", replicas=2, detached=False)
    try:
        registry = ray.get_actor("nodeloss.registry", namespace="lgc")
        assert ray.get(registry.__ray_call__.remote(
            lambda self: ray.get_runtime_context().get_node_id())) == c.head_node.node_id
        lost = {a["node_id"] for a in _answers(dep)} - {c.head_node.node_id}
        assert len(lost) == 1
        c.remove_node(worker)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(a is not None for a in _answers(dep)) > 2:
            time.sleep(0.2)
        alive = [a for a in _answers(dep) if a is not None]
        assert len(alive) == 2 and all(a["node_id"] == c.head_node.node_id for a in alive)
        new = c.add_node(num_cpus=1, resources={"lgc_device": 2}, object_store_memory=200 * 2**20)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(a is not None for a in _answers(dep)):
            time.sleep(0.5)
        answers = _answers(dep)
        assert all(a is not None for a in answers), answers
        assert {a["node_id"] for a in answers if a["restarted"]} == {new.node_id}
        assert dep.ready(max_age=0)
        for x in requests(6, seed=8):
            np.testing.assert_allclose(dep.infer({"x": x})["y"], numpy_mlp(x, w), rtol=1e-5, atol=1e-5)
    finally:
        dep.shutdown()
