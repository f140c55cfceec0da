"""Training of the `shapes` preset's generator, one readable file per stage.

    python -m vhs.train.autoencoder   the DC-AE on rendered scenes               -> build/train/autoencoder
    python -m vhs.train.teacher       text encoder + DiT, TrigFlow flow matching  -> build/train/teacher
    python -m vhs.train.distill       the one-step student on teacher ODE pairs  -> build/train/student
    python -m vhs.train.assemble      write the preset folder vhs/presets/shapes

Every stage is seeded, resumable from its checkpoint, shows a tqdm bar and appends to a loss log.
`make train-generator` runs them in order.
"""
