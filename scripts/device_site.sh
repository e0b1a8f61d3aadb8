# Sourced by the device scripts: the carried wheels into /tmp/site and PYTHONPATH set to use them.
#   . scripts/device_site.sh diffusers [torchao] [quant] || exit 1
# (always with an argument, so the caller's own arguments do not leak in.) `torchao` adds .whl's
# torchao wheel (the torchao-* backends); `quant` adds the wheels in .whl-quant when carried (carry
# only what fits: the working tree may not pass 64 MiB). Each wheel is installed once per machine:
# re-installing under another script's running processes breaks their imports.
_device_wheels=()
for _set in "$@"; do
  case $_set in
    diffusers) _device_wheels+=(.whl/diffusers-*.whl) ;;
    torchao) _device_wheels+=(.whl/torchao-*.whl) ;;
    quant) ls .whl-quant/*.whl > /dev/null 2>&1 && _device_wheels+=(.whl-quant/*.whl) ;;
  esac
done
for _wheel in "${_device_wheels[@]}"; do
  _mark=/tmp/site/.installed-$(basename "$_wheel")
  [ -f "$_mark" ] && continue
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$_wheel" \
      && touch "$_mark" || return 1
done
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
# bitsandbytes travels unpacked (its wheel is 42 MB; see scale_device.sh): used where carried
if [ -d .whl-bnb/bitsandbytes ]; then export PYTHONPATH=$PYTHONPATH:$PWD/.whl-bnb; fi
