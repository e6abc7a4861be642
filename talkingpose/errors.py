"""The one exception type the pack raises for problems a user can fix.

Its message is a full sentence that says what is wrong and what to do; the nodes show it as it is in
ComfyUI's error dialog and the command line prints it without a traceback.
"""


class TalkingPoseError(ValueError):
    pass


class RunMismatch(TalkingPoseError):
    """A resumed run's inputs or settings differ from those of the interrupted run whose work it would continue
    (callers that can offer another way out, such as the batch worker, tell it apart by this type)."""


# ComfyUI names a failed node's exception "<module>.<qualname>" next to the message (execution.py's
# full_type_name). Reported from the package, where it is also importable, it reads
# "talkingpose.TalkingPoseError" instead of the submodule's path; pickling (worker processes) finds it there too.
TalkingPoseError.__module__ = "talkingpose"
