// test_function_length.cpp — keeps every hand-written function in native/src and native/cuda at 150 lines or
// fewer (issue 21): a function that long is split into named steps instead. The scan reads the sources as text: it
// drops comments, string/char literals (raw strings included) and preprocessor lines, then matches braces. A brace
// block counts as a function body when the text before it ends in a parameter list (optionally followed by const,
// noexcept, override, a trailing return type or a constructor's initializer list); namespace, class, struct, enum
// and extern blocks are scopes whose members are scanned in turn. A function's length runs from the first line of
// its declaration to its closing brace.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr int kMaxFunctionLines = 150;

struct Function {
    std::string file;
    int first_line;
    int last_line;
    std::string header;
    int lines() const { return last_line - first_line + 1; }
};

// Blank out comments, literals and preprocessor lines, keeping every newline so line numbers stay right.
std::string strip_code(const std::string& s) {
    std::string out(s.size(), ' ');
    size_t i = 0;
    bool line_start = true;
    auto keep_newline = [&](size_t k) {
        if (s[k] == '\n') out[k] = '\n';
    };
    while (i < s.size()) {
        const char c = s[i];
        if (c == '\n') {
            out[i++] = '\n';
            line_start = true;
            continue;
        }
        if (line_start && (c == ' ' || c == '\t')) {
            ++i;
            continue;
        }
        if (line_start && c == '#') {  // preprocessor line, with backslash continuations
            while (i < s.size() && s[i] != '\n') {
                if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\n') {
                    out[i + 1] = '\n';
                    i += 2;
                    continue;
                }
                ++i;
            }
            continue;
        }
        line_start = false;
        if (c == '/' && i + 1 < s.size() && s[i + 1] == '/') {
            while (i < s.size() && s[i] != '\n') ++i;
            continue;
        }
        if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
            i += 2;
            while (i + 1 < s.size() && !(s[i] == '*' && s[i + 1] == '/')) keep_newline(i++);
            i += 2;
            continue;
        }
        if (c == 'R' && i + 1 < s.size() && s[i + 1] == '"' && (i == 0 || !(std::isalnum((unsigned char)s[i - 1]) || s[i - 1] == '_'))) {
            const size_t open = s.find('(', i + 2);
            const std::string close = ")" + s.substr(i + 2, open - (i + 2)) + "\"";
            const size_t end = s.find(close, open);
            const size_t stop = end == std::string::npos ? s.size() : end + close.size();
            for (size_t k = i; k < stop; ++k) keep_newline(k);
            out[i] = '0';  // a literal stays a token
            i = stop;
            continue;
        }
        if (c == '"' || (c == '\'' && !(i > 0 && std::isxdigit((unsigned char)s[i - 1])))) {  // 1'000 is a digit separator
            out[i++] = '0';  // a literal stays a token
            while (i < s.size() && s[i] != c) {
                if (s[i] == '\\') ++i;
                if (i < s.size()) keep_newline(i++);
            }
            ++i;
            continue;
        }
        out[i++] = c;
    }
    return out;
}

std::string trim(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t\n");
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(" \t\n") - a + 1);
}

bool has_word(const std::string& s, const std::string& w) {
    for (size_t p = s.find(w); p != std::string::npos; p = s.find(w, p + 1)) {
        const bool left = p == 0 || !(std::isalnum((unsigned char)s[p - 1]) || s[p - 1] == '_');
        const size_t e = p + w.size();
        const bool right = e >= s.size() || !(std::isalnum((unsigned char)s[e]) || s[e] == '_');
        if (left && right) return true;
    }
    return false;
}

enum class Block { Scope, Function, Other };

// What the text between the previous statement end and a `{` makes of that brace.
Block classify(const std::string& header) {
    const std::string h = trim(header);
    if (h.empty()) return Block::Other;
    for (const char* w : {"namespace", "struct", "class", "union", "enum"}) {
        // `struct X {` opens a scope, but `X f(struct Y y) {` and `enum class E : int {` must not be confused: a
        // scope keyword counts only when no parameter list precedes the brace.
        if (has_word(h, w) && h.find('(') == std::string::npos) return Block::Scope;
    }
    if (h.rfind("extern", 0) == 0 && h.find('(') == std::string::npos) return Block::Scope;
    if (h.back() == '=' || h.back() == ',' || h.back() == '(' || h.back() == '[') return Block::Other;
    const size_t close = h.find(')');
    if (close == std::string::npos) return Block::Other;
    // In a constructor's initializer list, `X::X(int a) : a_(a), b_{a} {`, the brace after a member name
    // initializes that member; the body's brace follows a `)` or `}`.
    bool init_list = false;
    for (size_t k = close; k < h.size(); ++k) {
        if (h[k] == ':' && h[k - 1] != ':' && (k + 1 == h.size() || h[k + 1] != ':')) init_list = true;
    }
    const char last = h.back();
    if (init_list && (std::isalnum((unsigned char)last) || last == '_' || last == '>')) return Block::Other;
    return Block::Function;
}

std::vector<Function> scan(const std::string& file, const std::string& text) {
    const std::string s = strip_code(text);
    std::vector<Function> found;
    std::vector<Block> stack;
    int line = 1;
    int header_line = 0;  // first line with a token since the last `;`, `{` or `}`
    std::string header;
    int fn_depth = -1;  // depth of the open function body, -1 when none
    int fn_first = 0;
    std::string fn_header;
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '\n') {
            ++line;
            header += ' ';
            continue;
        }
        if (fn_depth >= 0) {  // inside a body: only count braces
            if (c == '{') stack.push_back(Block::Other);
            if (c == '}') {
                stack.pop_back();
                if ((int)stack.size() == fn_depth) {
                    found.push_back({file, fn_first, line, fn_header});
                    fn_depth = -1;
                    header.clear();
                    header_line = 0;
                }
            }
            continue;
        }
        if (c == '{') {
            const Block b = classify(header);
            if (b == Block::Function) {
                fn_depth = (int)stack.size();
                fn_first = header_line ? header_line : line;
                fn_header = trim(header).substr(0, 120);
            } else if (b == Block::Other) {
                // An aggregate initializer or similar at scope level: skip to its matching brace.
                int depth = 1;
                while (depth > 0 && ++i < s.size()) {
                    if (s[i] == '\n') ++line;
                    if (s[i] == '{') ++depth;
                    if (s[i] == '}') --depth;
                }
                header += "{}";
                continue;
            }
            stack.push_back(b);
            header.clear();
            header_line = 0;
            continue;
        }
        if (c == '}' || c == ';') {
            if (c == '}' && !stack.empty()) stack.pop_back();
            header.clear();
            header_line = 0;
            continue;
        }
        if (c == ':' && i + 1 < s.size() && s[i + 1] != ':' && (i == 0 || s[i - 1] != ':')) {
            // `public:` / `private:` inside a class ends the previous declaration's header.
            const std::string h = trim(header);
            if (h == "public" || h == "private" || h == "protected") {
                header.clear();
                header_line = 0;
                continue;
            }
        }
        if (!std::isspace((unsigned char)c) && header_line == 0) header_line = line;
        header += c;
    }
    return found;
}

std::vector<std::filesystem::path> sources() {
    std::vector<std::filesystem::path> files;
    for (const char* dir : {"native/src", "native/cuda"}) {
        for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(HQ_REPO_ROOT) / dir)) {
            const std::string ext = e.path().extension().string();
            if (ext == ".cpp" || ext == ".h" || ext == ".cu" || ext == ".cuh") files.push_back(e.path());
        }
    }
    std::sort(files.begin(), files.end());
    return files;
}

std::string read_all(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

TEST_CASE("the scanner finds functions and their lengths") {
    const std::string src =
        "namespace a {\n"                         // 1
        "struct S { int f() const { return 1; }\n"  // 2
        "  static constexpr int t[] = {1, 2};\n"    // 3
        "};\n"                                    // 4
        "int g(int x,\n"                          // 5
        "      int y) {\n"                        // 6
        "    const char* s = \"}\"; // }\n"       // 7
        "    auto l = [&] { return '{'; };\n"     // 8
        "    return x + y;\n"                     // 9
        "}\n"                                     // 10
        "S::S(int v) : v_(v), w_{v} {\n"          // 11
        "}\n"                                     // 12
        "}  // namespace a\n";
    const auto fns = scan("x.cpp", src);
    REQUIRE(fns.size() >= 3);
    CHECK(fns[0].first_line == 2);
    CHECK(fns[0].last_line == 2);
    CHECK(fns[1].first_line == 5);
    CHECK(fns[1].last_line == 10);
    CHECK(fns.back().last_line == 12);
}

TEST_CASE("no hand-written function in native/src or native/cuda is over 150 lines") {
    const auto files = sources();
    REQUIRE(files.size() > 20);
    size_t functions = 0;
    int longest = 0;
    std::string report;
    for (const auto& p : files) {
        const std::string rel = std::filesystem::relative(p, HQ_REPO_ROOT).string();
        for (const Function& f : scan(rel, read_all(p))) {
            ++functions;
            longest = std::max(longest, f.lines());
            if (f.lines() > kMaxFunctionLines) {
                report += rel + ":" + std::to_string(f.first_line) + "-" + std::to_string(f.last_line) + " (" +
                          std::to_string(f.lines()) + " lines): " + f.header + "\n";
            }
        }
    }
    MESSAGE(functions << " functions scanned, the longest " << longest << " lines");
    CHECK(functions > 300);
    if (!report.empty()) {
        FAIL_CHECK("functions over " << kMaxFunctionLines << " lines; split each into named steps:\n" << report);
    }
}
