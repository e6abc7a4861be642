"""The one exception type the pack raises for problems a user can fix.

Its message is a full sentence that says what is wrong and what to do; the nodes show it as it is in
ComfyUI's error dialog and the command line prints it without a traceback.
"""


class TalkingPoseError(ValueError):
    pass
