import FleetContract
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The terminal the tool talks to: results on stdout, progress and questions on stderr, answers
/// from stdin. Whether each is a terminal decides between a live bar and plain lines, and whether
/// the tool may ask at all.
struct Console: Sendable {
    let stdinIsTerminal: Bool
    let stderrIsTerminal: Bool

    init() {
        stdinIsTerminal = isatty(STDIN_FILENO) == 1
        stderrIsTerminal = isatty(STDERR_FILENO) == 1
    }

    /// A result line, on stdout.
    func print(_ text: String) {
        Swift.print(text)
    }

    /// A diagnostic or progress line, on stderr.
    func error(_ text: String) {
        write(toStandardError: text + "\n")
    }

    /// Writes `text` to stderr as it is (no newline), for a bar redrawn in place. Results printed
    /// before it go out first: stdout is buffered (fully, when it is a pipe or a file), and a
    /// stream shared by both would otherwise show the progress before the results, or amid them.
    func write(toStandardError text: String) {
        fflush(nil)  // every output stream, stdout among them
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// Prints `value` as indented JSON with sorted keys, on stdout.
    func printJSON(_ value: JSONValue) {
        Swift.print(Format.prettyJSON(value))
    }

    /// Asks a yes/no question on stderr and reads the answer; anything but y/yes is no.
    func confirm(_ question: String) -> Bool {
        write(toStandardError: "\(question) [y/N] ")
        guard let answer = readLine() else { return false }
        return ["y", "yes"].contains(answer.trimmingCharacters(in: .whitespaces).lowercased())
    }
}
