"""The users file: who may do what in the portal and, with `--users`, on the command line.

YAML written by `payouts users add` / `users remove`, readable by its owner only; passwords are
stored as argon2id hashes only (argon2-cffi's defaults):

    users:
      alice: {role: approver, password_hash: "$argon2id$v=19$...", partners: []}
      pm1: {role: partner_manager, password_hash: "...", partners: [PRT-0001, PRT-0007]}

Roles (SPEC section 9): `viewer` sees everything but payment files; `approver` also approves,
reopens, releases and downloads payment files; `partner_manager` sees only its partners.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROLES = ("viewer", "approver", "partner_manager")
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_hasher = None


class UsersError(ValueError):
    """A users file or a user that breaks the rules above; the message is one line."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str = field(repr=False)
    partners: tuple[str, ...] = ()

    def may(self, action: str) -> bool:
        """`view` (months, totals, files but payment files), `approve` (approve, reopen, release,
        payment files), `partner` (a partner's statements)."""
        if action == "partner":
            return True
        if action == "view":
            return self.role in ("viewer", "approver")
        if action == "approve":
            return self.role == "approver"
        raise ValueError(action)

    def sees_partner(self, partner_id: str) -> bool:
        return self.role != "partner_manager" or partner_id in self.partners


def _ph():
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
    return _hasher


def load(path: str | Path) -> dict[str, User]:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UsersError(f"{path.name}: not valid YAML: {str(exc).splitlines()[0]}") from None
    users = {}
    for name, entry in (raw.get("users") or {}).items():
        if not isinstance(entry, dict) or entry.get("role") not in ROLES or not entry.get("password_hash"):
            raise UsersError(f"{path.name}: user {name!r} needs a role ({', '.join(ROLES)}) and a password_hash")
        users[str(name)] = User(str(name), entry["role"], entry["password_hash"],
                                tuple(str(p) for p in entry.get("partners") or ()))
    return users


def save(path: str | Path, users: dict[str, User]) -> None:
    """Write the file atomically, readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"users": {u.name: {"role": u.role, "password_hash": u.password_hash, "partners": list(u.partners)}
                     for u in sorted(users.values(), key=lambda u: u.name)}}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# payouts users file: written by `payouts users add`; argon2 hashes only\n")
        yaml.safe_dump(doc, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def add(path: str | Path, name: str, role: str, password: str, partners: tuple[str, ...] = ()) -> User:
    if not _NAME.fullmatch(name):
        raise UsersError(f"user name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-'")
    if role not in ROLES:
        raise UsersError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "partner_manager" and not partners:
        raise UsersError("a partner_manager needs --partners (the partner ids it may see)")
    if role != "partner_manager" and partners:
        raise UsersError("--partners is only for a partner_manager")
    if len(password) < 12:
        raise UsersError("the password must have at least 12 characters")
    users = load(path)
    users[name] = User(name, role, _ph().hash(password), tuple(partners))
    save(path, users)
    return users[name]


def remove(path: str | Path, name: str) -> None:
    users = load(path)
    if name not in users:
        raise UsersError(f"no user {name!r}")
    del users[name]
    save(path, users)


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    """The user when the password matches its hash; None otherwise (same work for an unknown name)."""
    from argon2.exceptions import VerificationError, InvalidHashError

    user = users.get(name)
    target = user.password_hash if user else _dummy_hash()
    try:
        _ph().verify(target, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


_DUMMY: str | None = None


def _dummy_hash() -> str:
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = _ph().hash("not a password of anyone")
    return _DUMMY
