//! The on-change command line: split into a program and its arguments the way a POSIX shell
//! splits words, with nothing expanded and no shell run.

/// Splits a command line into a program and its arguments the way a POSIX shell splits words:
/// blanks separate words, single quotes keep everything literally, double quotes keep everything
/// but `\` before `$`, `` ` ``, `"`, `\` or a newline, and `\` outside quotes keeps the next
/// character. Nothing is expanded (`$HOME` stays as written) and no shell runs the result, so
/// unquoted operators (`|`, `;`, `&`, `<`, `>`, `` ` ``) are refused rather than passed on.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    const HINT: &str = "no shell runs the command";
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has started: `''` is an empty argument, not nothing.
    let mut started = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            '\\' => match chars.next() {
                // A backslash-newline joins lines.
                Some('\n') => {}
                Some(next) => {
                    word.push(next);
                    started = true;
                }
                None => {
                    return Err(format!(
                        "{s:?} ends with a lone backslash; remove it or escape it as \\\\"
                    ))
                }
            },
            '\'' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(inner) => word.push(inner),
                        None => {
                            return Err(format!(
                                "{s:?} has an unclosed single quote; close it with '"
                            ))
                        }
                    }
                }
            }
            '"' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(next @ ('$' | '`' | '"' | '\\')) => word.push(next),
                            Some(next) => {
                                word.push('\\');
                                word.push(next);
                            }
                            None => {
                                return Err(format!(
                                    "{s:?} has an unclosed double quote; close it with \""
                                ))
                            }
                        },
                        Some(inner) => word.push(inner),
                        None => {
                            return Err(format!(
                                "{s:?} has an unclosed double quote; close it with \""
                            ))
                        }
                    }
                }
            }
            '|' | ';' | '&' | '<' | '>' | '`' => {
                return Err(format!(
                    "{s:?} has an unquoted {c:?}: {HINT}; quote it to pass it as an argument, or run e.g. /bin/sh -c '...' if the image has a shell"
                ));
            }
            other => {
                word.push(other);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    if words.first().is_none_or(|program| program.is_empty()) {
        return Err(format!(
            "{s:?} names no program; give a program and its arguments, e.g. /usr/bin/curl -X POST http://127.0.0.1:8080/reload"
        ));
    }
    Ok(words)
}
