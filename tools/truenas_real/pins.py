"""What TrueNAS 25.10 ("Goldeye") ships of the framework's Python dependencies, as PyPI pins.

Two sources, both read, nothing copied but names and versions:

- truenas/python-truenas-requirements, branch ``stable/goldeye``, ``requirements.txt`` and
  ``constraints.txt``: the packages TrueNAS builds itself from PyPI (45 lines; the
  ``git+https://github.com/truenas/python-prompt-toolkit`` line is left out: it is only used
  by midcli's shell, which this suite does not run, and only PyPI is reachable here).
- Everything else middlewared imports comes from Debian: truenas/scale-build
  ``conf/build.manifest`` (branch ``stable/goldeye``) says ``debian_release: "bookworm"``,
  and ``src/middlewared/debian/control`` of truenas/middleware lists the ``python3-*``
  packages. Their versions here are Debian 12's (``apt-cache policy`` on bookworm); TrueNAS
  pins bookworm-backports at priority 900, which may carry a newer one for a few of them.

``TRUENAS_REQUIREMENTS`` (a requirements file) replaces the first list, e.g. for
``stable/26`` (TrueNAS 26.0 builds on Debian trixie and needs Python 3.13: its code uses
PEP 696 type-parameter defaults).
"""

from __future__ import annotations

import os
from pathlib import Path

# python-truenas-requirements stable/goldeye: requirements.txt (44 of 45 lines) + constraints.txt
GOLDEYE_REQUIREMENTS: tuple[str, ...] = (
    "acme==2.11.0",
    "aiohappyeyeballs==2.6.1",
    "aiohttp==3.12.14",
    "aiohttp-rpc==1.3.2",
    "aiorwlock==1.4.0",
    "aiosignal==1.4.0",
    "anyio==4.6.2.post1",
    "annotated-types==0.7.0",
    "asyncssh==2.18.0",
    "attrs==24.2.0",
    "aws-requests-auth==0.4.3",
    "boto3==1.35.49",
    "botocore==1.35.49",
    "certbot==2.6.0",
    "certbot-dns-cloudflare==2.6.0",
    "certbot-dns-digitalocean==2.6.0",
    "certbot-dns-google==2.6.0",
    "certbot-dns-ovh==2.6.0",
    "cloudflare==2.19.0",
    "cryptography==43.0.3",
    "dns-lexicon==3.18.0",
    "docker==7.1.0",
    "email_validator==2.2.0",
    "google-api-core==2.21.0",
    "google-api-python-client==2.149.0",
    "googleapis-common-protos==1.65.0",
    "google-auth==2.35.0",
    "google-auth-httplib2==0.2.0",
    "jsonlines==4.0.0",
    "paramiko==3.5.0",
    "pyOpenSSL==24.3.0",
    "pyRFC3339==1.1",
    "propcache==0.2.0",
    "proto-plus==1.25.0",
    "protobuf==4.25.5",
    "pydantic==2.9.2",
    "pydantic_core==2.23.4",
    "pyroute2==0.7.12",
    "python-digitalocean==1.17.0",
    "remote-pdb==2.1.0",
    "s3transfer==0.10.3",
    "typing_extensions==4.12.2",
    "yarl==1.17.0",
    "websocket-client==1.8.0",
    # constraints.txt
    "chardet==5.1.0",
    "charset-normalizer==3.0.1",
    "idna==3.3",
    "requests==2.28.2",
)

# Debian 12 (bookworm) versions of the python3-* packages in middlewared's debian/control
# (and of what zettarepl's and truenas_api_client's setup.py require), as PyPI names.
BOOKWORM_PACKAGES: tuple[str, ...] = (
    "SQLAlchemy==1.4.46",  # python3-sqlalchemy 1.4.46+ds1-1
    "alembic==1.8.1",  # alembic 1.8.1-2
    "Mako==1.2.4",  # python3-mako (alembic's and etc.py's templates)
    "croniter==1.3.5",  # python3-croniter 1.3.5-3
    "dnspython==2.3.0",  # python3-dnspython 2.3.0-1+deb12u1
    "html2text==2020.1.16",  # python3-html2text 2020.1.16-2
    "humanfriendly==10.0",  # python3-humanfriendly 10.0-3
    "coloredlogs==15.0.1",  # python3-coloredlogs 15.0.1-1 (zettarepl)
    "Markdown==3.4.1",  # python3-markdown 3.4.1-2+deb12u1
    "pyotp==2.6.0",  # python3-pyotp 2.6.0-3
    "pyinotify==0.9.6",  # python3-pyinotify 0.9.6-2
    "pytz==2022.7.1",  # python3-tz 2022.7.1-4
    "python-dateutil==2.8.2",  # python3-dateutil 2.8.2-2
    "isodate==0.6.1",  # python3-isodate 0.6.1-1
    "PyJWT==2.6.0",  # python3-jwt 2.6.0-1+deb12u1
    "jsonschema==4.10.3",  # python3-jsonschema 4.10.3-1
    "PyYAML==6.0",  # python3-yaml 6.0-3+b2
    "setproctitle==1.3.1",  # python3-setproctitle 1.3.1-1+b2
    "pyvmomi==6.7.1",  # python3-pyvmomi 6.7.1-4 (no TrueNAS build of it in build.manifest)
    "six==1.16.0",  # python3-six (pyvmomi 6.7)
    "httpx==0.23.3",  # python3-httpx 0.23.3-1
    "urllib3==1.26.12",  # python3-urllib3 1.26.12-1+deb12u4
    "pycryptodomex==3.11.0",  # python3-pycryptodome 3.11.0 (imported as Cryptodome)
    "josepy==1.13.0",  # python3-josepy 1.13.0-1
    "influxdb==5.3.1",  # python3-influxdb 5.3.1-3
    "pyudev==0.24.0",  # python3-pyudev 0.24.0-1
    "packaging==23.0",  # python3-packaging 23.0-1
    "psutil==5.9.4",  # python3-psutil 5.9.4-1+b1
    "Jinja2==3.1.2",  # python3-jinja2
    "pysnmp==4.4.12",  # python3-pysnmp4 4.4.12-2
    "pyasn1==0.4.8",  # python3-pyasn1 (pysnmp 4.4)
    "PyKMIP==0.10.0",  # python3-pykmip 0.10.0-4
    "zeroconf==0.47.3",  # python3-zeroconf 0.47.3-1
    "requests-oauthlib==1.3.0",  # python3-requests-oauthlib 1.3.0+ds-1
    "setuptools==66.1.1",  # python3-setuptools (pkg_resources)
    "python-pam==2.0.2",  # python3-pampy 2.0.2-1 (FirefighterBlu3/python-pam, ctypes over libpam)
)

# The suite's own tools inside the same interpreter (not part of TrueNAS). Playwright drives
# Debian's Chromium (/usr/bin/chromium, installed by ./run): no browser is downloaded, its
# wheel only carries the driver. The versions the project's own .venv runs tests/ui with.
SUITE_PACKAGES: tuple[str, ...] = ("pytest==8.3.3", "playwright==1.65.2", "greenlet==3.5.6")


def _name(requirement: str) -> str:
    return requirement.split("==", 1)[0].strip().lower().replace("_", "-")


def _unpinned(requirements: tuple[str, ...]) -> list[str]:
    return [r.split("==", 1)[0] for r in requirements]


def framework_requirements(version: str = "25.10") -> list[str]:
    """The pins for the framework venv of middlewared ``version`` ("25.10.6", "26.0.0-MASTER"...).

    Only 25.10 is pinned as TrueNAS ships it. Other releases build on another Debian (26.0 and
    master: trixie, Python 3.13) whose versions are not recorded here: their Debian-provided
    packages are installed unpinned, and ``TRUENAS_REQUIREMENTS`` should name that branch's
    requirements.txt (python-truenas-requirements ``stable/26`` or ``master``); without it the
    goldeye names are used unpinned. The manifest records what was installed either way.
    """
    override = os.environ.get("TRUENAS_REQUIREMENTS")
    truenas = list(GOLDEYE_REQUIREMENTS) if version.startswith("25.10") else _unpinned(GOLDEYE_REQUIREMENTS)
    if override:
        lines = [line.split("#", 1)[0].strip() for line in Path(override).read_text().splitlines()]
        given = [line for line in lines if line and not line.startswith(("git+", "-"))]
        names = {_name(line) for line in given}
        # What goldeye built itself and a later branch left to Debian (pydantic in stable/26)
        # is still needed: unpinned, after the branch's own pins.
        truenas = given + [r for r in _unpinned(GOLDEYE_REQUIREMENTS) if _name(r) not in names]
    debian = list(BOOKWORM_PACKAGES) if version.startswith("25.10") else _unpinned(BOOKWORM_PACKAGES)
    return truenas + debian + list(SUITE_PACKAGES)
