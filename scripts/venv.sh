# Sourced by run_local.sh and run_tests.sh: make .venv hold this project and its test
# dependencies, installing only when setup.py changed since the last install.
# Sets $python to the venv's interpreter.

venv=.venv
python=$venv/bin/python
stamp=$venv/.installed-setup-py.sha256

if [[ ! -x $python ]]; then
    echo "==> creating $venv (python3 -m venv)"
    python3 -m venv "$venv"
fi

want=$(sha256sum setup.py | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    log=$venv/pip-install.log
    echo "==> installing the project and its test dependencies into $venv (pip install -e '.[test]'; its output: $log)"
    if ! "$python" -m pip install --disable-pip-version-check --progress-bar off -e '.[test]' >"$log" 2>&1; then
        tail -n 30 "$log"
        echo "error: pip could not install the project; its whole output is in $log"
        exit 1
    fi
    echo "$want" > "$stamp"
else
    echo "==> $venv is up to date with setup.py"
fi
