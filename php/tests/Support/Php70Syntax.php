<?php

declare(strict_types=1);

namespace Wamp\Tests\Support;

/**
 * Finds syntax, functions, classes and constants newer than PHP 7.0 in PHP
 * source, with PHP 8's tokenizer, so that code meant for PHP 7.0 can be
 * checked where no PHP 7 can be installed. It knows the features listed in
 * violations(); it is a linter of known constructs, not a PHP 7.0 parser:
 * `php -l` on PHP 8 checks the rest of the syntax.
 */
final class Php70Syntax
{
    /** Tokens that exist only for newer syntax, by the version that added it. */
    private const TOKENS = [
        'T_FN' => 'arrow function (7.4)',
        'T_COALESCE_EQUAL' => '??= (7.4)',
        'T_MATCH' => 'match (8.0)',
        'T_NULLSAFE_OBJECT_OPERATOR' => '?-> (8.0)',
        'T_ATTRIBUTE' => 'attribute (8.0)',
        'T_ENUM' => 'enum (8.1)',
        'T_READONLY' => 'readonly (8.1)',
    ];

    /** Type names a PHP 7.0 signature cannot use, by version. */
    private const TYPES = [
        'void' => '7.1', 'iterable' => '7.1', 'object' => '7.2', 'mixed' => '8.0', 'static' => '8.0',
        'null' => '8.0', 'false' => '8.0', 'true' => '8.2', 'never' => '8.1',
    ];

    /** Functions added after PHP 7.0 (the ones code like ours could reach for). */
    private const FUNCTIONS = [
        'is_iterable' => '7.1', 'spl_object_id' => '7.2', 'stream_isatty' => '7.2', 'mb_chr' => '7.2', 'mb_ord' => '7.2',
        'array_key_first' => '7.3', 'array_key_last' => '7.3', 'is_countable' => '7.3', 'hrtime' => '7.3',
        'net_get_interfaces' => '7.3', 'mb_str_split' => '7.4', 'get_mangled_object_vars' => '7.4',
        'str_contains' => '8.0', 'str_starts_with' => '8.0', 'str_ends_with' => '8.0', 'get_debug_type' => '8.0',
        'get_resource_id' => '8.0', 'fdiv' => '8.0', 'preg_last_error_msg' => '8.0', 'array_is_list' => '8.1',
        'enum_exists' => '8.1', 'json_validate' => '8.3', 'mb_str_pad' => '8.3', 'str_increment' => '8.3',
        'array_find' => '8.4', 'array_any' => '8.4', 'array_all' => '8.4',
    ];

    /** Classes, interfaces and constants added after PHP 7.0. */
    private const NAMES = [
        'JsonException' => '7.3', 'Socket' => '8.0', 'Stringable' => '8.0', 'ValueError' => '8.0',
        'UnhandledMatchError' => '8.0', 'WeakMap' => '8.0', 'Attribute' => '8.0', 'WeakReference' => '7.4',
        'JSON_THROW_ON_ERROR' => '7.3', 'JSON_INVALID_UTF8_IGNORE' => '7.2', 'JSON_INVALID_UTF8_SUBSTITUTE' => '7.2',
        'PHP_FLOAT_EPSILON' => '7.2', 'PHP_FLOAT_MAX' => '7.2', 'PHP_FLOAT_MIN' => '7.2', 'PHP_FLOAT_DIG' => '7.2',
        'PHP_OS_FAMILY' => '7.2',
    ];

    private const VISIBILITY = [T_PUBLIC, T_PROTECTED, T_PRIVATE];
    private const MODIFIERS = [T_PUBLIC, T_PROTECTED, T_PRIVATE, T_STATIC, T_VAR, T_FINAL, T_ABSTRACT];
    private const SKIP = [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT];

    /** @var list<array{int|string, string, int}> the significant tokens: id (or the character), text, line */
    private array $tokens = [];
    /** @var list<string> */
    private array $found = [];

    /** The oldest PHP the code is meant for: what is newer is reported. */
    private string $target = '7.0';

    /**
     * What in $code PHP $target (7.0 unless given) would not run, one
     * "line N: what (version)" each.
     *
     * @return list<string>
     */
    public static function violations(string $code, string $target = '7.0'): array
    {
        $check = new self();
        $check->target = $target;
        $line = 1; // single characters come without theirs
        foreach (token_get_all($code) as $token) {
            [$id, $text] = is_array($token) ? [$token[0], $token[1]] : [$token, $token];
            if (!in_array($id, self::SKIP, true)) {
                $check->tokens[] = [$id, $text, $line];
            }
            $line += substr_count($text, "\n");
        }
        $check->scan();
        return $check->found;
    }

    private function scan(): void
    {
        $newTokens = [];
        foreach (self::TOKENS as $name => $what) {
            if (defined($name)) {
                $newTokens[constant($name)] = $what;
            }
        }
        /** @var list<array{string, int, bool}> open brackets: the character, its index, whether it is a signature's */
        $open = [];
        $signature = false; // between `function` and the `{` or `;` (or `use`) after its parameters
        $signatureDepth = -1;
        $count = count($this->tokens);
        for ($i = 0; $i < $count; $i++) {
            [$id, $text, $line] = $this->tokens[$i];
            $prev = $this->tokens[$i - 1][0] ?? null;
            $next = $this->tokens[$i + 1][0] ?? null;
            if (isset($newTokens[$id])) {
                $this->add($line, $newTokens[$id]);
            }
            switch (true) {
                case $id === T_FUNCTION:
                    $signature = true;
                    $signatureDepth = count($open);
                    break;
                case $signature && ($id === '{' || $id === ';' || $id === T_DOUBLE_ARROW) && count($open) === $signatureDepth:
                    $signature = false;
                    break;
                case $id === T_LNUMBER || $id === T_DNUMBER:
                    if (str_contains($text, '_')) {
                        $this->add($line, 'numeric literal separator (7.4)');
                    }
                    break;
                case $id === T_END_HEREDOC:
                    if ($text !== ltrim($text)) {
                        $this->add($line, 'indented heredoc end (7.3)');
                    }
                    break;
                case $id === T_VARIABLE && $next === T_DOUBLE_COLON && ($this->tokens[$i + 2][0] ?? null) === T_CLASS:
                    $this->add($line, '$object::class (8.0)');
                    break;
                case $id === T_THROW && !in_array($prev, [';', '{', '}', ')', ':', T_ELSE, T_OPEN_TAG, T_DO], true):
                    $this->add($line, 'throw as an expression (8.0)');
                    break;
            }
            $inSignatureParens = $signature && count($open) === $signatureDepth + 1 && end($open)[2];
            if ($signature && count($open) >= $signatureDepth) {
                $this->checkSignatureToken($i, $inSignatureParens);
            } elseif (in_array($id, self::MODIFIERS, true)) {
                $this->checkMember($i);
            }
            if ($id === T_STRING || $id === T_NAME_FULLY_QUALIFIED) {
                $this->checkName($i);
            }
            if ($id === T_CATCH) {
                $this->checkCatch($i);
            }
            if ($id === '[' && in_array($prev, [';', '{', '}', T_OPEN_TAG, T_AS], true) && $this->closingIsFollowedByAssignment($i)) {
                $this->add($line, '[...] destructuring (7.1)');
            }
            if ($id === T_ELLIPSIS) {
                if ($next === ')' && $prev === '(') {
                    $this->add($line, 'first-class callable f(...) (8.1)');
                } elseif ($open !== [] && (end($open)[0] === '[' || $this->before(end($open)[1]) === T_ARRAY)) {
                    $this->add($line, 'spread in an array (7.4)');
                }
            }
            if ($id === ',' && $next === ')' && $open !== [] && !in_array($this->before(end($open)[1]), [T_ARRAY, T_LIST], true)) {
                $this->add($line, $inSignatureParens ? 'trailing comma in parameters (8.0)' : 'trailing comma in a call (7.3)');
            }
            if ($id === T_DOUBLE_ARROW && $open !== [] && $this->before(end($open)[1]) === T_LIST) {
                $this->add($line, 'keys in list() (7.1)');
            }
            if (($id === T_STRING || $id === T_ARRAY || $id === T_LIST) && $next === ':' && in_array($prev, ['(', ','], true)
                && !$inSignatureParens && $open !== [] && end($open)[0] === '(') {
                $this->add($line, 'named argument (8.0)');
            }
            if ($id === '(' || $id === '[' || $id === '{' || $id === T_CURLY_OPEN || $id === T_DOLLAR_OPEN_CURLY_BRACES) {
                $open[] = [$id === '(' ? '(' : ($id === '[' ? '[' : '{'), $i, $signature && $id === '(' && count($open) === $signatureDepth];
            } elseif (($id === ')' || $id === ']' || $id === '}') && $open !== []) {
                array_pop($open);
            }
        }
    }

    /** Within a signature: types, promotion, defaults. */
    private function checkSignatureToken(int $i, bool $inParameters): void
    {
        [$id, $text, $line] = $this->tokens[$i];
        $prev = $this->tokens[$i - 1][0] ?? null;
        $next = $this->tokens[$i + 1][0] ?? null;
        if ($id === '?' && $this->isTypeToken($next)) {
            $this->add($line, 'nullable type (7.1)');
        }
        if ($id === '|' && $inParameters || $id === '|' && $this->inReturnType($i)) {
            $this->add($line, 'union type (8.0)');
        }
        if ($id === T_AMPERSAND_NOT_FOLLOWED_BY_VAR_OR_VARARG && $inParameters) {
            $this->add($line, 'intersection type (8.1)');
        }
        if ($inParameters && in_array($id, self::VISIBILITY, true)) {
            $this->add($line, 'constructor promotion (8.0)');
        }
        if ($inParameters && $id === T_NEW) {
            $this->add($line, 'new in an initializer (8.1)');
        }
        $isType = ($id === T_STRING || $id === T_STATIC) && isset(self::TYPES[strtolower($text)]);
        $typePosition = $inParameters ? $next === T_VARIABLE || $next === T_ELLIPSIS || $next === T_AMPERSAND_FOLLOWED_BY_VAR_OR_VARARG || $next === '|'
            : $this->inReturnType($i);
        if ($isType && $typePosition && !($inParameters && $prev === '=')) {
            $this->add($line, strtolower($text) . ' type (' . self::TYPES[strtolower($text)] . ')');
        }
    }

    /** Whether token $i stands between a signature's `)` `:` and its body. */
    private function inReturnType(int $i): bool
    {
        for ($j = $i - 1; $j >= 0; $j--) {
            $id = $this->tokens[$j][0];
            if ($id === ':' && ($this->tokens[$j - 1][0] ?? null) === ')') {
                return true;
            }
            if (!($this->isTypeToken($id) || $id === '?' || $id === '|' || $id === T_STATIC)) {
                return false;
            }
        }
        return false;
    }

    /** A class member's modifiers: typed property (7.4), const visibility (7.1). */
    private function checkMember(int $i): void
    {
        $prev = $this->tokens[$i - 1][0] ?? null;
        if (in_array($prev, self::MODIFIERS, true) || $this->tokens[$i][0] === T_STATIC && !in_array($prev, [';', '{', '}'], true)) {
            return; // not the first modifier, or `static` in an expression
        }
        $j = $i;
        while (isset($this->tokens[$j]) && in_array($this->tokens[$j][0], self::MODIFIERS, true)) {
            $j++;
        }
        $after = $this->tokens[$j][0] ?? null;
        $line = $this->tokens[$i][2];
        if ($after === T_CONST) {
            $this->add($line, 'class constant modifier (7.1)');
        } elseif (!in_array($after, [T_VARIABLE, T_FUNCTION, T_CLASS, T_DOUBLE_COLON, '(', null], true)) {
            $this->add($line, 'typed property (7.4)');
        }
    }

    private function checkName(int $i): void
    {
        [$id, $text, $line] = $this->tokens[$i];
        $prev = $this->tokens[$i - 1][0] ?? null;
        $next = $this->tokens[$i + 1][0] ?? null;
        if (in_array($prev, [T_OBJECT_OPERATOR, T_DOUBLE_COLON, T_FUNCTION, T_CONST, T_NULLSAFE_OBJECT_OPERATOR], true)) {
            return; // a method, a member, or a declaration of our own
        }
        $name = ltrim($text, '\\');
        if ($next === '(' && $prev !== T_NEW && isset(self::FUNCTIONS[strtolower($name)])) {
            $this->add($line, "$name() (" . self::FUNCTIONS[strtolower($name)] . ')');
        } elseif (isset(self::NAMES[$name])) {
            $this->add($line, "$name (" . self::NAMES[$name] . ')');
        }
    }

    /** catch (A | B $e) is 7.1; catch (A) without a variable is 8.0. */
    private function checkCatch(int $i): void
    {
        $line = $this->tokens[$i][2];
        $variable = false;
        for ($j = $i + 2; isset($this->tokens[$j]) && $this->tokens[$j][0] !== ')'; $j++) {
            if ($this->tokens[$j][0] === '|') {
                $this->add($line, 'catch of several types (7.1)');
            }
            $variable = $variable || $this->tokens[$j][0] === T_VARIABLE;
        }
        if (!$variable) {
            $this->add($line, 'catch without a variable (8.0)');
        }
    }

    private function closingIsFollowedByAssignment(int $i): bool
    {
        $depth = 0;
        for ($j = $i; isset($this->tokens[$j]); $j++) {
            $id = $this->tokens[$j][0];
            $depth += $id === '[' ? 1 : ($id === ']' ? -1 : 0);
            if ($depth === 0) {
                $after = $this->tokens[$j + 1][0] ?? null;
                return $after === '=' || $after === ')' && $this->tokens[$i - 1][0] === T_AS;
            }
        }
        return false;
    }

    /** @return int|string|null the token before token $i */
    private function before(int $i)
    {
        return $this->tokens[$i - 1][0] ?? null;
    }

    /** @param int|string|null $id */
    private function isTypeToken($id): bool
    {
        return in_array($id, [T_STRING, T_ARRAY, T_CALLABLE, T_NAME_QUALIFIED, T_NAME_FULLY_QUALIFIED, T_NAME_RELATIVE, T_STATIC], true);
    }

    private function add(int $line, string $what): void
    {
        // Every finding ends with the version that added it: "(8.1)".
        if (preg_match('/\((\d+\.\d+)\)$/', $what, $m) === 1 && version_compare($m[1], $this->target, '<=')) {
            return;
        }
        $this->found[] = "line $line: $what";
    }
}
