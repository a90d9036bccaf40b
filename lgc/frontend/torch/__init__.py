"""The PyTorch front end: an FX graph of core ATen operators (from torch.export or AOTAutograd)
becomes an lgc Graph for concrete input shapes. `importer.import_fx` walks the graph;
`converters/` maps each ATen operator onto lgc's core ops. The public face is `lgc.torch`.
"""
