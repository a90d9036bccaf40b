"""Runtime: device choice, build errors that point at the kernel line, malformed graphs."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import lgc
from lgc.backends.program import Program
from lgc.errors import ModelError
from lgc.runtime import Executor, list_devices, select_device
from lgc.runtime.device import DeviceError
from lgc.runtime.executor import BuildError


def test_default_device_is_usable():
    dev = select_device()
    assert dev.usable
    assert any(d.index == dev.index for d in list_devices())


def test_device_selection_by_spec(monkeypatch):
    assert select_device("cpu").kind == "cpu"
    monkeypatch.setenv("LGC_DEVICE", "cpu")
    assert select_device().kind == "cpu"
    with pytest.raises(DeviceError, match="out of range"):
        select_device("99")
    with pytest.raises(DeviceError, match="no usable OpenCL device matching 'no-such-device'"):
        select_device("no-such-device")


def test_build_error_names_kernel_and_line():
    src = ("__kernel void k_fine(__global float* out0) { out0[0] = 1.0f; }\n"
           "__kernel void k_broken(__global float* out0)\n{\n  out0[0] = undefined_thing;\n}\n")
    prog = Program(src, [], [], [], [])
    with pytest.raises(BuildError, match=r"kernel k_broken, line 4: .*undefined_thing"):
        Executor(prog)


def test_node_reading_undefined_value_is_model_error():
    node = helper.make_node("Relu", ["nowhere"], ["y"], name="lost")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match="node 'lost' .*reads 'nowhere'"):
        lgc.compile(m).run({"x": np.zeros(2, np.float32)})


def test_type_error_names_node():
    node = helper.make_node("Add", ["x", "z"], ["y"], name="mismatch")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                                        helper.make_tensor_value_info("z", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError, match=r"node 'mismatch' \(Add\).*do not broadcast"):
        lgc.compile(m).run({"x": np.zeros(2, np.float32), "z": np.zeros(3, np.float32)})


def test_a_buffer_past_the_device_allocation_limit_is_an_lgc_error_naming_it():
    """Not pyopencl's INVALID_BUFFER_SIZE or a MemoryError at the first run: a DeviceError
    (an LgcError) before anything is allocated, naming the tensor."""
    from types import SimpleNamespace

    from lgc.backends.program import BufferSpec, Program
    from lgc.errors import LgcError
    from lgc.runtime.executor import _check_allocations
    prog = Program(source="", buffers=[BufferSpec(64, "input", "x"), BufferSpec(4096, "temp", "h"),
                                       BufferSpec(4096, "temp", arena=1)],
                   launches=[], inputs=[], outputs=[])
    tiny = SimpleNamespace(name="tiny", cl_device=SimpleNamespace(max_mem_alloc_size=1024))
    with pytest.raises(LgcError, match=r"temp 'h' needs 4096 bytes, more than tiny allocates at once \(1024\)"):
        _check_allocations(prog, tiny)
