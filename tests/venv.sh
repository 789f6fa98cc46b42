# Sourced by the check scripts that run pinned Python tools (scikit-learn, XGBoost, pandas, tritonclient, PyYAML,
# kubernetes-validate):
#
#   pinned_venv VENV REQUIREMENTS
#
# makes VENV, a virtualenv with REQUIREMENTS installed by $PYTHON (default python3), unless VENV was made from the
# same requirements file: it is reused while the file is unchanged, and made anew when it changes.
pinned_venv() {
  local venv=$1 req=$2
  if [[ ! -f $venv/.req ]] || ! cmp -s "$req" "$venv/.req"; then
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.req"
  fi
}
