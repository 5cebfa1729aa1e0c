#!/bin/bash
# copy each checkpoint of $1 into snap_$1_N with the base's processor files
D=$1; B=$2
while true; do
  for c in $D/checkpoints/checkpoint-*; do
    [ -d "$c" ] || continue; n=${c##*-}; s=snap_${D}_$n
    [ -d $s ] && continue
    sleep 20; mkdir -p $s; cp $c/model.safetensors $c/config.json $s/ 2>/dev/null
    for f in chat_template.jinja generation_config.json preprocessor_config.json tokenizer.json tokenizer_config.json unireward.json; do cp $B/$f $s/; done
  done
  sleep 30
done
