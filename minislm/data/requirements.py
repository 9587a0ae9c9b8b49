"""ISO-style software requirement sentences ("The system shall ..."), seeded, held out.

The GPT-2 slides (``shared/seeds/aggressive-gpt2-optimization-slides.txt``)
fine-tune GPT-2 on one narrow task -- writing ISO-style software requirements
-- and show that the task focus makes the model survive aggressive
compression. Their probe prompts are kept in ``SLIDE_PROMPTS``: "The software
must be able to", "User authentication must include", "The system must
provide real-time" (the fine-tuned model answered e.g. "... user credentials
before granting access." and "... real-time notifications."); about 6 % of the
generated sentences continue one of them, so the prompts are in-distribution.

The generator writes one requirement per sentence in the ISO/IEC/IEEE 29148
style: a subject, a modal verb, a verifiable predicate, optionally a leading
condition. Variety comes from

- 24 subjects ("The system", "The software", "The payment module", ...), and
  dedicated subjects with their own predicates ("User authentication must
  include ...", "All passwords shall ...");
- modal verbs: shall (most), must, should, shall not / must not for
  prohibitions;
- six kinds of predicate: functional, performance (milliseconds, transactions
  per second, concurrent users), availability and retention (percentages,
  days), security (lock-outs, encryption, time-outs), interface/export
  (formats, protocols) and real-time provision;
- conditions ("When a user submits a form, ...", "If the network connection
  is lost, ...", "During peak load, ...") on about a third of the sentences.

:func:`requirements_dataset` draws ``n`` unique sentences (default 2,000, seed
0) and splits them 80/10/10 into train / validation / test with a seeded
shuffle; the test sentences never appear in training.
"""

import numpy as np

from minislm.errors import ConfigError

DEFAULT_COUNT = 2000
DEFAULT_SEED = 0
SPLITS = ("train", "validation", "test")
SLIDE_PROMPTS = ("The software must be able to", "User authentication must include", "The system must provide real-time")

SUBJECTS = (
    "The system", "The software", "The application", "The user interface", "The server", "The database",
    "The payment module", "The navigation module", "The logging service", "The backup subsystem", "The API",
    "The mobile client", "The scheduler", "The reporting module", "The infotainment unit", "The web portal",
    "The control unit", "The firmware", "The notification service", "The search engine", "The booking service",
    "The inventory module", "The monitoring service", "The diagnostic tool",
)
ACTORS = ("users", "administrators", "operators", "customers", "the driver", "authorised personnel",
          "registered users", "support staff", "auditors")
MILLISECONDS = (50, 100, 200, 250, 300, 500, 800)
SECONDS = (2, 3, 5, 10, 15, 30, 60)
MINUTES = (5, 10, 15, 30, 60)
DAYS = (7, 30, 90, 180, 365)
RATES = (100, 250, 500, 1000, 5000, 10000)
USERS = (50, 100, 500, 1000, 5000, 10000)
AVAILABILITY = ("99.0", "99.5", "99.9", "99.95", "99.99")
ATTEMPTS = (3, 5, 10)

PREDICATES = {  # kind -> templates filled from the slot tables above
    "functional": (
        "allow {actor} to {task}", "provide {actor} with {feature}", "be able to {task}", "support {feature}",
        "display {information} to {actor}", "notify {actor} when {event}", "record {record} in the audit log",
        "validate {input} before {processing}", "let {actor} {task}", "be able to {task} without restarting",
    ),
    "performance": (
        "respond to {request} within {ms} milliseconds", "process at least {rate} transactions per second",
        "support at least {users} concurrent users", "complete {operation} in less than {s} seconds",
        "start up within {s} seconds", "return search results within {ms} milliseconds",
        "handle {rate} requests per second without degradation", "be able to process {rate} transactions per second",
    ),
    "availability": (
        "be available {availability} % of the time", "recover from {failure} within {min} minutes",
        "retain {record} for at least {days} days", "create a backup of {data} every {min} minutes",
        "remain operational during {failure}",
    ),
    "security": (
        "lock a user account after {attempts} failed login attempts", "require multi-factor authentication for {actor}",
        "log out inactive users after {min} minutes", "encrypt {data} using AES-256",
        "transmit {data} only over TLS 1.3", "restrict {task} to {actor}", "mask {data} in all log files",
    ),
    "interface": (
        "export {information} in {format} format", "import {data} from {format} files",
        "expose {information} through a REST interface", "provide an API to {task}",
        "communicate with the backend over {protocol}",
    ),
    "realtime": (
        "provide real-time {feature}", "provide real-time updates of {information}",
        "display {information} in real time", "send real-time notifications to {actor} when {event}",
    ),
}
PROHIBITIONS = (
    "store passwords in plain text", "expose {data} to unauthenticated users", "delete {record} without confirmation",
    "exceed {ms} milliseconds of latency for {request}", "transmit {data} without encryption",
    "allow {actor} to {task} without authorisation",
)
SLOTS = {
    "task": ("export reports", "reset their password", "cancel a booking", "update their profile",
             "search the product catalogue", "download invoices", "change the language settings",
             "schedule a maintenance window", "view the order history", "delete their account",
             "configure alerts", "approve purchase requests", "start a navigation route",
             "pair a mobile phone", "generate monthly reports"),
    "feature": ("notifications", "status updates", "a search function", "an undo function", "role-based access control",
                "an offline mode", "a dark mode", "a progress indicator", "multi-language support",
                "traffic information", "sensor readings", "alerts", "usage statistics", "voice control"),
    "information": ("the order status", "the current vehicle speed", "the remaining battery charge",
                    "error messages", "the account balance", "the estimated arrival time", "system health metrics",
                    "the transaction history", "all open tickets", "sensor data"),
    "event": ("a payment fails", "a new message arrives", "the battery level drops below 20 %",
              "a login from a new device is detected", "a scheduled job fails", "the disk is 90 % full",
              "an order is shipped", "a sensor reports a fault"),
    "record": ("every login attempt", "all configuration changes", "each financial transaction",
               "all access to personal data", "every administrator action", "audit records", "error reports"),
    "input": ("all user input", "uploaded files", "every payment request", "form data", "configuration files",
              "API requests"),
    "processing": ("storing it", "processing it", "forwarding it to the backend", "writing it to the database"),
    "request": ("user requests", "a search query", "a login request", "an API call", "a voice command",
                "a page request"),
    "operation": ("a full backup", "the nightly data import", "a software update", "report generation",
                  "the checkout process", "a system restart"),
    "failure": ("a power failure", "a server crash", "a network outage", "a database failure",
                "the loss of one data centre"),
    "data": ("personal data", "payment data", "user credentials", "customer records", "diagnostic data",
             "location data", "all backups"),
    "format": ("CSV", "PDF", "JSON", "XML", "Excel"),
    "protocol": ("HTTPS", "MQTT", "gRPC", "a secure WebSocket connection"),
}
CONDITIONS = (
    "When a user submits a form", "If the network connection is lost", "During peak load",
    "Upon a failed login", "While the vehicle is moving", "If a sensor fails", "After a software update",
    "When the battery level is low", "In the event of a power failure", "Upon receipt of a valid request",
    "When an administrator changes a setting", "If the database is unavailable",
)
DEDICATED = (  # subjects that only make sense with their own predicates
    ("User authentication", ("include user credentials before granting access", "include a one-time password",
                             "require a password of at least {length} characters",
                             "lock the account after {attempts} failed attempts",
                             "expire sessions after {min} minutes of inactivity",
                             "include verification of the user's identity")),
    ("All passwords", ("be stored as salted hashes", "contain at least {length} characters",
                       "be changed every {days} days")),
    ("The audit log", ("record {record}", "be retained for at least {days} days", "be protected against modification")),
    ("Response time", ("not exceed {ms} milliseconds for {request}", "be below {s} seconds under peak load")),
)
LENGTHS = (8, 10, 12, 16)
SLIDE_COMPLETIONS = {  # the slides' probe prompts, continued the way a requirement would go on
    "The software must be able to": ("process {rate} transactions per second", "{task}",
                                     "recover from {failure} within {min} minutes",
                                     "export {information} in {format} format", "run without network access"),
    "User authentication must include": ("user credentials before granting access", "a one-time password",
                                         "verification of the user's identity", "a check of the account status",
                                         "multi-factor authentication for {actor}"),
    "The system must provide real-time": ("notifications", "status updates", "updates of {information}",
                                          "traffic information", "alerts to {actor} when {event}"),
}


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _fill(rng: np.random.Generator, template: str) -> str:
    values = {name: _pick(rng, choices) for name, choices in SLOTS.items()}
    values.update(actor=_pick(rng, ACTORS), ms=_pick(rng, MILLISECONDS), s=_pick(rng, SECONDS),
                  min=_pick(rng, MINUTES), days=_pick(rng, DAYS), rate=f"{_pick(rng, RATES):,}",
                  users=f"{_pick(rng, USERS):,}", availability=_pick(rng, AVAILABILITY),
                  attempts=_pick(rng, ATTEMPTS), length=_pick(rng, LENGTHS))
    return template.format(**values)


def _modal(rng: np.random.Generator) -> str:
    draw = rng.random()
    return "shall" if draw < 0.6 else "must" if draw < 0.8 else "should"


def requirement_sentence(rng: np.random.Generator) -> str:
    """One requirement sentence drawn with ``rng``."""
    draw = rng.random()
    if draw < 0.06:
        prompt = _pick(rng, SLIDE_PROMPTS)
        return f"{prompt} {_fill(rng, _pick(rng, SLIDE_COMPLETIONS[prompt]))}."
    if draw < 0.14:
        subject, predicates = _pick(rng, DEDICATED)
        return f"{subject} {_pick(rng, ('shall', 'must'))} {_fill(rng, _pick(rng, predicates))}."
    subject = _pick(rng, SUBJECTS)
    if draw < 0.22:
        sentence = f"{subject} {_pick(rng, ('shall not', 'must not'))} {_fill(rng, _pick(rng, PROHIBITIONS))}"
    else:
        kind = _pick(rng, tuple(PREDICATES))
        sentence = f"{subject} {_modal(rng)} {_fill(rng, _pick(rng, PREDICATES[kind]))}"
    if rng.random() < 0.33:
        sentence = f"{_pick(rng, CONDITIONS)}, {sentence[0].lower()}{sentence[1:]}"
    return sentence + "."


def requirement_sentences(n: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[str]:
    """``n`` distinct requirement sentences, in generation order."""
    if n < 1:
        raise ConfigError(f"n={n}: expected a positive number of requirement sentences")
    rng = np.random.default_rng(seed)
    seen, sentences = set(), []
    for _ in range(200 * n):
        sentence = requirement_sentence(rng)
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
            if len(sentences) == n:
                return sentences
    raise ConfigError(f"only {len(sentences)} distinct requirement sentences after {200 * n} draws; n={n} is too many")


def requirements_dataset(n: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> dict[str, list[str]]:
    """``n`` unique sentences shuffled with ``seed`` and split 80/10/10 into train / validation / test."""
    sentences = requirement_sentences(n, seed)
    order = np.random.default_rng(seed + 1).permutation(len(sentences))
    n_train, n_validation = int(round(0.8 * n)), int(round(0.1 * n))
    shuffled = [sentences[i] for i in order]
    return {
        "train": shuffled[:n_train],
        "validation": shuffled[n_train:n_train + n_validation],
        "test": shuffled[n_train + n_validation:],
    }
