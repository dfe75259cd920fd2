"""The tenancy policy: which images and ServiceAccounts a SchemaMigration may run with.

Whoever may create a SchemaMigration in a namespace may have the operator create a Job there,
running ``spec.image`` as ``spec.job.serviceAccountName``: without a policy, the operator would
be a confused deputy for anyone who may create SchemaMigrations but not Jobs. The operator
refuses a spec outside its policy with reason ``PolicyDenied`` and creates no Job; the chart's
optional ValidatingAdmissionPolicy refuses the same at apply time, with the same patterns
turned into the same regular expressions (:func:`pattern_regex`).

Pure: no I/O. Patterns are whole-string matches where ``*`` stands for any run of characters
(``/`` and ``:`` included) and every other character for itself; ``*`` alone allows anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

ANY = "*"
#: The ServiceAccount a pod gets when its spec names none.
NAMESPACE_DEFAULT_ACCOUNT = "default"


def pattern_regex(pattern: str) -> str:
    """``pattern`` as an anchored RE2/Python regular expression (``*`` → ``.*``)."""
    return "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"


def repository_of(image: str) -> str:
    """An image reference without its tag and digest: ``ghcr.io/umt/umt-migrations``."""
    name = image.split("@", 1)[0]
    colon, slash = name.rfind(":"), name.rfind("/")
    return name[:colon] if colon > slash else name


def repository_patterns(image: str) -> tuple[str, ...]:
    """Every tag and digest of ``image``'s repository: the default allowed images."""
    repository = repository_of(image)
    return (f"{repository}:*", f"{repository}@*")


@dataclass(frozen=True)
class Policy:
    """Allowed image patterns and ServiceAccount names (``("*",)``: anything)."""

    images: tuple[str, ...]
    service_accounts: tuple[str, ...]
    #: Always allowed: the operator's default image, and the account pods get when the spec
    #: names none (the operator's setting, else the namespace's ``default``).
    default_image: str = ""
    default_account: str = NAMESPACE_DEFAULT_ACCOUNT

    @classmethod
    def from_settings(cls, images: Sequence[str], service_accounts: Sequence[str],
                      default_image: str, default_account: str) -> Policy:
        """Empty lists mean the defaults: the default image's repository, the default account."""
        account = default_account or NAMESPACE_DEFAULT_ACCOUNT
        return cls(images=tuple(images) or repository_patterns(default_image),
                   service_accounts=tuple(service_accounts) or (account,),
                   default_image=default_image, default_account=account)

    def image_allowed(self, image: str) -> bool:
        return image == self.default_image or any(
            re.fullmatch(pattern_regex(pattern), image) for pattern in self.images)

    def service_account_allowed(self, name: str | None) -> bool:
        return not name or name == self.default_account or ANY in self.service_accounts \
            or name in self.service_accounts

    def image_problem(self, image: str) -> str | None:
        """Why ``image`` may not run, or None."""
        if self.image_allowed(image):
            return None
        return (f"image {image} is not allowed by the operator's policy (allowed: "
                f"{', '.join(self.images)}; the operator's setting UMT_OPERATOR_ALLOWED_IMAGES, "
                "chart value policy.allowedImages)")

    def service_account_problem(self, name: str | None) -> str | None:
        """Why the pod may not run as ServiceAccount ``name``, or None."""
        if self.service_account_allowed(name):
            return None
        return (f"job.serviceAccountName {name} is not allowed by the operator's policy "
                f"(allowed: {', '.join(self.service_accounts)}; the operator's setting "
                "UMT_OPERATOR_ALLOWED_SERVICE_ACCOUNTS, chart value "
                "policy.allowedServiceAccounts)")
