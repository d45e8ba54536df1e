import type { Command } from 'commander';
import { KeyturnError } from '../domain/errors';
import { createProgram } from './program';

/**
 * Shell completion generated from the program's own command tree, so a command or option added to
 * src/cli/program.ts is completed without anyone editing a list. Each command path (`keyturn`,
 * `keyturn token`, `keyturn token sign`, …) gets its subcommands, its options, and the options that
 * take a value (after which file names are offered).
 */

interface CompletionEntry {
  path: string;
  commands: string[];
  options: string[];
  takesValue: string[];
}

/** Every command path of the tree, root first. */
export function completionEntries(program: Command): CompletionEntry[] {
  const entries: CompletionEntry[] = [];
  const visit = (command: Command, path: string) => {
    const options = command.options.filter((option) => !option.hidden);
    const flags = (list: typeof options) =>
      list.flatMap((option) => [option.short, option.long].filter((flag): flag is string => flag !== undefined));
    entries.push({
      path,
      commands: command.commands.map((sub) => sub.name()),
      options: [...flags(options), '-h', '--help'],
      takesValue: flags(options.filter((option) => option.required || option.optional)),
    });
    for (const sub of command.commands) visit(sub, `${path} ${sub.name()}`);
  };
  visit(program, program.name());
  return entries;
}

/** The `case` that sets commands, options and takes for a command path; the same in bash and zsh. */
function wordsFunction(program: Command): string {
  const quote = (words: string[]) => `'${words.join(' ')}'`;
  const cases = completionEntries(program).map(
    (entry) =>
      `    ${quote([entry.path])}) commands=${quote(entry.commands)}; options=${quote(entry.options)}; takes=${quote(entry.takesValue)} ;;`,
  );
  return ['_keyturn_words() {', '  commands= options= takes=', '  case $1 in', ...cases, '  esac', '}'].join('\n');
}

function bashCompletion(program: Command): string {
  return `# keyturn completion for bash: source <(keyturn completion bash)
${wordsFunction(program)}
_keyturn() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} at=keyturn i commands options takes
  for ((i = 1; i < COMP_CWORD; i++)); do
    _keyturn_words "$at"
    [[ " $commands " == *" \${COMP_WORDS[i]} "* ]] && at="$at \${COMP_WORDS[i]}"
  done
  _keyturn_words "$at"
  if [[ " $takes " == *" $prev "* ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
  elif [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$commands" -- "$cur"))
  fi
}
complete -o default -F _keyturn keyturn`;
}

function zshCompletion(program: Command): string {
  // \`at\`, not \`path\`: zsh ties \`path\` to PATH.
  return `#compdef keyturn
# keyturn completion for zsh: source <(keyturn completion zsh) after compinit
${wordsFunction(program)}
_keyturn() {
  local at=keyturn i commands options takes
  for ((i = 2; i < CURRENT; i++)); do
    _keyturn_words "$at"
    [[ " $commands " == *" \${words[i]} "* ]] && at="$at \${words[i]}"
  done
  _keyturn_words "$at"
  if [[ " $takes " == *" \${words[CURRENT-1]} "* ]]; then
    _files
  elif [[ \${words[CURRENT]} == -* ]]; then
    compadd -- \${=options}
  else
    compadd -- \${=commands}
  fi
}
compdef _keyturn keyturn`;
}

export async function completionAction(shell: string): Promise<void> {
  const program = createProgram();
  if (shell === 'bash') console.log(bashCompletion(program));
  else if (shell === 'zsh') console.log(zshCompletion(program));
  else
    throw new KeyturnError('ERR_CONFIG_INVALID', `no completion for "${shell}": choose bash or zsh`, {
      field: 'shell',
    });
}
