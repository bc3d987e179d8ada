"""USB algorithm classes: everything that ties HDL to USB's ``AlgorithmBase`` and hooks.

Owns: the device layer (:mod:`.device`: placement, evaluation, the resumable training loop),
checkpoint files (:mod:`.checkpoint_io`: checksums, the previous checkpoint, temp clean-up), what
an exact resume restores beyond weights (:mod:`.resume_state`: random states, data position),
fault injection for the crash tests (:mod:`.faults`), run settings
read from USB's ``args`` (:mod:`.settings`), data sets (:mod:`.datasets`), network builders
(:mod:`.nets`), the ``hdl_*`` wrappers (:mod:`.hdl_wrapper`), the one seam through which HDL
targets reach a base algorithm's unlabeled loss (:mod:`.seam`), the host-synchronisation checks of
HDL's per-step code (:mod:`.host_sync`), the embedding pass over the
training set (:mod:`.embedding`), semantic supervised losses (:mod:`.semantic_loss`) and USB's
imbalance algorithms (:mod:`.imbalance`).

May import: semilearn, torch, the core ``hdl`` package.  Never imports :mod:`hdl.algorithms.run`
or :mod:`hdl.algorithms.bench`.
"""
