"""lgc.snn: spiking neural networks on lgc arrays (`import lgc.snn as snn`).

Neurons are pure functions over their state (LIF, ALIF, Izhikevich), run over time with
lax.scan; spikes have surrogate gradients, so grad through `run` is backpropagation
through time. Plus input encoders, homeostasis, STDP and the spike-sparse matmul with its
measured per-layer choice. docs/SNN.md has the equations and an example.

    lif = snn.LIF(tau=10.0, spike=snn.fast_sigmoid(25.0))
    state, spikes = snn.run(lif, currents)            # currents [T, B, N] -> spikes [T, B, N]
"""
from .encoders import latency, latency_steps, rate  # noqa: F401
from .neurons import (ALIF, LI, LIF, ALIFState, Izhikevich, IzhikevichState, LIFState,  # noqa: F401
                      run)
from .plasticity import (STDP, STDPState, adapt_threshold, firing_rate, stdp_train,  # noqa: F401
                         synaptic_scaling)
from .sparse import Choice, choose, matmul, spike_matmul, time_paths  # noqa: F401
from .surrogate import Surrogate, arctan, fast_sigmoid, heaviside, triangle  # noqa: F401
