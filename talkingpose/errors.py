"""The one exception type the pack raises for problems a user can fix.

Its message is a full sentence that says what is wrong and what to do; the nodes show it as it is in
ComfyUI's error dialog and the command line prints it without a traceback.
"""


class TalkingPoseError(ValueError):
    pass


# ComfyUI names a failed node's exception "<module>.<qualname>" next to the message (execution.py's
# full_type_name). Reported from the package, where it is also importable, it reads
# "talkingpose.TalkingPoseError" instead of the submodule's path; pickling (worker processes) finds it there too.
TalkingPoseError.__module__ = "talkingpose"
