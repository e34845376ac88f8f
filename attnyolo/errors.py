"""attnyolo's user-facing errors: the CLI prints them as one line, the API raises them as they are."""


class AttnYoloError(ValueError):
    """Bad input that the user can fix; the message names what is wrong and what would be right."""


class DataError(AttnYoloError):
    """A dataset or data YAML that cannot be used."""


def one_line(message: object) -> str:
    """``message`` as one line (the CLI's error format: ``attnyolo: error: <one line>``)."""
    return " ".join(str(message).split())
