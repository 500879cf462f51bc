"""Imports go one way: the domain packages stay free of Flask and SQLAlchemy."""

import subprocess
import sys


def test_domain_packages_stay_framework_free():
    code = (
        "import sys, quality, billing, quality.methods, billing.money; "
        "assert not {'flask', 'sqlalchemy'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
