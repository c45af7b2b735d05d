"""`emails.EmailRule` applies the domain part of the e-mail rule once per distinct domain; its answer for every
cell is the rule's own (`rows.normalize_emails`): the normalised address, or the refusal with its message."""

import random

import email_validator
import pytest

from customer_master.imports import emails
from customer_master.imports.rows import normalize_emails

LOCAL_PARTS = [
    "einkauf", "Max.Mustermann", "a", "x" * 64, "x" * 65, "x" * 190, "first.last+tag", "o'brien", "a_b-c",
    "!#$%&'*+/=?^_`{|}~-", "Postmaster", "ABUSE", ".dot", "dot.", "two..dots", "", "müller", "a b", '"quoted"',
    '"a@b"', "a\\b", "a,b", "a;b", "(comment)a", "ñ", "\u212b",
]  # fmt: skip
DOMAINS = [
    "muster.de", "Muster.DE", "sub.firma-1.de", "x.co", "a.b.c.d.e.f.gh", "localhost", "example", "b.test",
    "b.local", "b.invalid", "b.onion", "b.arpa", "example.com", "example.org", "a.example", "firma.123",
    "ab--cd.de", "xn--mller-kva.de", "XN--MLLER-KVA.DE", "xn--zz.de", "müller.de", "-a.de", "a-.de", "a..de",
    ".a.de", "a.de.", "a.-b.de", "a.b-.de", f"{'l' * 63}.de", f"{'l' * 64}.de", ".".join(["abcdefghi"] * 25) + ".de",
    ".".join(["abcdefghi"] * 19) + ".de", "[127.0.0.1]", "[IPv6:::1]", "1.2.3.4", "a.b", "a.1b", "a.b1", "",
    "fırma.de", "ﬁrma.de", "a_b.de", "mail.xn--p1ai",
]  # fmt: skip
OTHER_CELLS = [
    "", " ", "kaputt@", "@muster.de", "a@@muster.de", "Name <a@muster.de>", "<a@muster.de>", " Lager@Muster.DE ",
    "a@muster.de\t", "a@muster.de b", "a@b@muster.de", "\u00a0a@muster.de", "a\u00a0@muster.de",
    "a@muster\uff0ede", "a\uff20muster.de", "a@muster.de" + "\u200b",
]  # fmt: skip


def crafted_cells() -> list[str]:
    return [f"{local}@{domain}" for local in LOCAL_PARTS for domain in DOMAINS] + OTHER_CELLS


def random_cells(count: int) -> list[str]:
    rng = random.Random(13)
    local_chars = "abcXYZ019.+-_'!~\"@ ü"
    domain_chars = "abXY09.-"
    tlds = ["de", "com", "DE", "test", "local", "1", "c", "xn--p1ai", "", "de."]
    cells = []
    for _ in range(count):
        local = "".join(rng.choice(local_chars) for _ in range(rng.randint(0, 8)))
        domain = "".join(rng.choice(domain_chars) for _ in range(rng.randint(0, 12)))
        cells.append(f"{local}@{domain}.{rng.choice(tlds)}".strip(".") if rng.random() < 0.9 else f"{local}{domain}")
    return cells


@pytest.mark.parametrize("cells", [crafted_cells(), random_cells(20_000)], ids=["crafted", "random"])
def test_every_answer_is_the_rules_own(cells: list[str]) -> None:
    rule = emails.EmailRule()
    assert rule(cells) == normalize_emails(cells)
    # And again with every domain already known, in another order.
    shuffled = cells[::-1]
    assert rule(shuffled) == normalize_emails(shuffled)
    # The shortcut is taken for many of them (so the comparison above covers it).
    accepted = [cell for cell in cells if emails._SIMPLE_ADDRESS.fullmatch(cell.strip())]
    assert len(accepted) > len(cells) / 4


def random_domains(count: int) -> list[str]:
    rng = random.Random(31)
    names = [name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES if "." not in name][:6]
    pieces = ["a", "B", "0", "9", "-", "--", "xn--", "x" * 62, "de", "COM", *names]

    def label() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 3)))

    separators = [".", ".", ".", ".", "..", "-."]
    return [
        "".join(label() + rng.choice(separators) for _ in range(rng.randint(0, 3))) + label() + rng.choice(["", "."])
        for _ in range(count)
    ]


@pytest.mark.parametrize("domains", [DOMAINS, random_domains(30_000)], ids=["crafted", "random"])
def test_a_plain_domain_is_one_the_rule_accepts_as_written(domains: list[str]) -> None:
    plain = [domain for domain in domains if emails.is_plain_domain(domain)]
    assert [normalize_emails([f"a@{domain}"])[0] for domain in plain] == [
        (f"a@{domain}", f"a@{domain}".lower(), None) for domain in plain
    ]
    assert len(plain) > len(domains) / 100


def test_the_rule_runs_once_per_domain_that_is_not_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def counted(cells: list[str]) -> list[emails.Problem]:
        checked.extend(cells)
        return normalize_emails(cells)

    monkeypatch.setattr(emails, "normalize_emails", counted)
    rule = emails.EmailRule()
    cells = [f"kontakt{n}@firma{n % 3}.de" for n in range(30)]  # plain: the rule is not asked
    cells += [f"kontakt{n}@xn--mller-kva{n % 2}.de" for n in range(10)]  # asked once each, and rewritten
    cells += ["Info@Sub.Firma.Beispiel", "info@sub.firma.beispiel", "kaputt@b.test", "x@b.test"]

    assert rule(cells) == normalize_emails(cells)
    # One probe per domain that is not plain; the cells the rule rewrites or refuses each get its own answer.
    assert sorted(checked) == sorted(
        ["a@xn--mller-kva0.de", "a@xn--mller-kva1.de", "a@b.test"]
        + [f"kontakt{n}@xn--mller-kva{n % 2}.de" for n in range(10)]
        + ["kaputt@b.test", "x@b.test"]
    )


def test_the_problems_are_the_refused_and_the_rewritten_cells() -> None:
    rule = emails.EmailRule()
    problems = rule.problems(["ok@muster.de", "Lager@Muster.DE", "kaputt@", "info@xn--mller-kva.de"])
    assert problems == [
        ("Lager@Muster.DE", "lager@muster.de", None),
        ("kaputt@", None, "Invalid e-mail address: kaputt@ (There must be something after the @-sign.)"),
        ("info@xn--mller-kva.de", "info@müller.de", None),
    ]
