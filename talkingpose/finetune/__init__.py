"""Personalisation: LoRA fine-tuning of the TalkingPose networks on one person's clip.

`recipe` is the official training recipe and the loss of one step; `data` encodes the clip once and draws the
batches; `trainer` adapts the networks with resumable checkpoints; `job` is the headless command's job;
`report` draws the loss curve. Loading an adapter onto a model is `talkingpose.lora`.
"""
