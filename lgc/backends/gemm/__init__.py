"""The GEMM skeleton every matmul and convolution kernel is made from: C = A @ B, with

  problem    what a node asks for: sizes, batch, a conv's geometry, an int8 op's zero point,
             scales and bias (Matmul, Conv, Affine, int8_terms)
  loads      storage to registers: float32, float16, integers converted to float (Load)
  readers    how A and B are addressed: rows, tiled rows, row panels, columns, column
             panels, a convolution's image (im2col, never materialised)
  cpu_tile   the CPU register-tile schedule: one work-item per tile, no local memory
  gpu_local  the GPU local-memory schedule: CLBlast-xgemm-style work-group tiles
  store      the results' way out: the fusion epilogue, vector stores, ragged edges

A generator is a description: which readers, which schedule, which parameters.

  op (generator)                     CPU target                  GPU target
  matmul, qmatmul (MatmulGen)        cpu_tile: Rows x Columns    gpu_local: Rows x Columns
  conv, qconv (ConvGen)              cpu_tile: Rows x Im2col     gpu_local: Rows x Im2col
  conv_split_k (gpu_split)           -                           gpu_local: Rows x Im2col
  matmul_panels, qmatmul_panels,     cpu_tile: Rows or RowPanels -
    qmatmul_bpanels (PanelGemmGen)     x Panels
  sparse_matmul                      its own walk, the tile store
The int8 forms read int8 through the same readers (converted in registers, less the zero
point) and apply their scales and bias to the finished accumulators.
"""
