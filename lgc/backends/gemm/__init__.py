"""The GEMM skeleton every matmul and convolution kernel is made from, C = A @ B:

  problem    what a node asks for: sizes, batch, a conv's geometry, an int8 op's zero point,
             scales and bias (Matmul, Conv, Affine, int8_terms)
  loads      storage to registers: float32, float16, integers converted to float (Load)
  readers    how A and B are addressed (rows, panels, a convolution's image, 4-bit columns, ...)
  cpu_tile   the CPU register-tile schedule: one work-item per tile, no local memory
  gpu_local  the GPU local-memory schedule: CLBlast-xgemm-style work-group tiles
  store      the results' way out: the fusion epilogue, vector stores, ragged edges

A generator is a description: which readers, which schedule, which parameters.
  matmul, qmatmul (kernels.linalg.MatmulGen)   A Rows x B Columns, on either schedule
  conv, qconv (kernels.nn.ConvGen)             Rows (or TiledRows) x Im2col, on either
  conv_split_k (gpu_split, via gpu_conv)       Rows x Im2col, GPU
  matmul_panels, qmatmul_panels, qmatmul_bpanels (cpu_gemm.PanelGemmGen)
                                               Rows or RowPanels x Panels, CPU
  sparse_matmul (sparse_kernels)               its own walk, the CPU tile's store
  qmatmul_nbits (nbits_kernels)                Rows x NBitsColumns: a dot-product walk on the
                                               CPU tile, GEMV or the local-memory GEMM on GPUs
"""
