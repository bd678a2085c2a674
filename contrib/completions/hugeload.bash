# bash completion for hugeload(1)                           -*- shell-script -*-
#
# Installed as /usr/share/bash-completion/completions/hugeload (loaded on
# demand by bash-completion), or sourced from ~/.bashrc. Works without the
# bash-completion package too; with it, the arguments after PROGRAM are
# completed as PROGRAM's own (as for `nice`, `env`).

_hugeload_files() {
    # Files and directories matching $1, quoted by bash (-o filenames).
    compopt -o filenames 2>/dev/null
    local IFS=$'\n'
    COMPREPLY=($(compgen -f -- "$1"))
}

_hugeload() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=""
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    local backends="auto pagecache thp hugetlb off"
    local strategies="conservative aggressive"
    COMPREPLY=()

    # A value after `--backend=`, whether or not COMP_WORDBREAKS split it
    # off ("--backend" "=" "th" or "--backend=th").
    local opt=$prev value=$cur
    if [[ $cur == = ]]; then
        opt=$prev value=""
    elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then
        opt=${COMP_WORDS[COMP_CWORD - 2]}
    elif [[ $cur == --*=* ]]; then
        opt=${cur%%=*} value=${cur#*=}
    fi

    # Which words before the cursor are hugeload's own: options, then a
    # command (--stat, --prime, --mark, --unmark) or PROGRAM.
    local i=1 word command=""
    while ((i < COMP_CWORD)); do
        word=${COMP_WORDS[i]}
        case $word in
        -s | --strategy | -b | --backend | --argv0)
            # The value is the next word, or the two after a split "=".
            if [[ ${COMP_WORDS[i + 1]} == = ]]; then
                ((i += 3))
            else
                ((i += 2))
            fi
            continue
            ;;
        --stat | --prime | --mark | --unmark | --binfmt-rule | -h | --help | -V | --version)
            command=$word
            break
            ;;
        --)
            ((i++))
            break
            ;;
        -?*) ;;
        *) break ;;
        esac
        ((i++))
    done

    case $command in
    --stat)
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--json" -- "$cur"))
        else
            local pids=(/proc/[0-9]*)
            COMPREPLY=($(compgen -W "${pids[*]#/proc/}" -- "$cur"))
        fi
        return 0
        ;;
    --prime)
        if [[ $prev == --list ]]; then
            _hugeload_files "$cur"
        elif [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--check --json --list" -- "$cur"))
        else
            _hugeload_files "$cur"
        fi
        return 0
        ;;
    --mark | --unmark)
        _hugeload_files "$cur"
        return 0
        ;;
    ?*)
        # --binfmt-rule, --help, --version take nothing.
        return 0
        ;;
    esac

    if ((i < COMP_CWORD)); then
        # Past PROGRAM (word i): its own arguments.
        if declare -F _command_offset >/dev/null; then
            _command_offset "$i"
        else
            _hugeload_files "$cur"
        fi
        return 0
    fi

    # Still among hugeload's options, or at PROGRAM.
    case $opt in
    -b | --backend)
        COMPREPLY=($(compgen -W "$backends" -- "$value"))
        ;;
    -s | --strategy)
        COMPREPLY=($(compgen -W "$strategies" -- "$value"))
        ;;
    --argv0) ;;
    *)
        if [[ $opt != "$prev" || $cur == = ]]; then
            # Some other --name=value: nothing to offer.
            :
        elif [[ $cur == -* ]] && ((i == COMP_CWORD)) && [[ ${COMP_WORDS[i - 1]} != -- ]]; then
            COMPREPLY=($(compgen -W "-s --strategy -b --backend -v --verbose
                --argv0 --perf-map --lock --stat --prime --mark --unmark
                --binfmt-rule -h --help -V --version --" -- "$cur"))
        elif [[ $cur == */* ]]; then
            _hugeload_files "$cur"
        else
            compopt -o filenames 2>/dev/null
            local IFS=$'\n'
            COMPREPLY=($(compgen -c -- "$cur" | sort -u))
        fi
        ;;
    esac
    # Unsplit "--backend=th": the whole word is replaced.
    if [[ $cur == --*=* && $cur != = && ${#COMPREPLY[@]} -gt 0 ]]; then
        COMPREPLY=("${COMPREPLY[@]/#/${cur%%=*}=}")
    fi
    return 0
}

complete -F _hugeload hugeload
