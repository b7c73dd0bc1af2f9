<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Tests\Support\Php70Syntax;

require_once __DIR__ . '/Support/Php70Syntax.php';

/**
 * The checker that keeps php7/ in PHP 7.0 syntax: it finds each newer
 * construct it knows, and passes code PHP 7.0 runs.
 */
final class Php70SyntaxTest extends TestCase
{
    /** @return iterable<string, array{string, string}> */
    public static function newerCode(): iterable
    {
        yield 'arrow function' => ['$f = fn ($x) => $x;', 'arrow function (7.4)'];
        yield '??=' => ['$a ??= 1;', '??= (7.4)'];
        yield 'match' => ['$a = match ($b) { 1 => 2, default => 3 };', 'match (8.0)'];
        yield 'nullsafe' => ['$a = $b?->c;', '?-> (8.0)'];
        yield 'attribute' => ["#[Foo]\nfunction f() {}", 'attribute (8.0)'];
        yield 'enum' => ['enum Suit { case Hearts; }', 'enum (8.1)'];
        yield 'readonly property' => ['class A { public readonly int $a; }', 'readonly (8.1)'];
        yield 'typed property' => ['class A { private static array $a = []; }', 'typed property (7.4)'];
        yield 'nullable typed property' => ['class A { public ?int $a = null; }', 'typed property (7.4)'];
        yield 'const visibility' => ['class A { private const X = 1; }', 'class constant modifier (7.1)'];
        yield 'nullable parameter' => ['function f(?string $a) {}', 'nullable type (7.1)'];
        yield 'nullable return' => ['function f(): ?string {}', 'nullable type (7.1)'];
        yield 'void' => ['function f(): void {}', 'void type (7.1)'];
        yield 'iterable' => ['function f(iterable $a) {}', 'iterable type (7.1)'];
        yield 'object' => ['function f(object $a) {}', 'object type (7.2)'];
        yield 'mixed' => ['function f(mixed $a) {}', 'mixed type (8.0)'];
        yield 'static return' => ['class A { public function f(): static {} }', 'static type (8.0)'];
        yield 'never' => ['function f(): never {}', 'never type (8.1)'];
        yield 'union parameter' => ['function f(int|string $a) {}', 'union type (8.0)'];
        yield 'union return' => ['function f(): int|false {}', 'union type (8.0)'];
        yield 'intersection' => ['function f(A&B $a) {}', 'intersection type (8.1)'];
        yield 'promotion' => ['class A { public function __construct(private int $a) {} }', 'constructor promotion (8.0)'];
        yield 'new in initializer' => ['function f($a = new B()) {}', 'new in an initializer (8.1)'];
        yield 'trailing comma in parameters' => ['function f($a, ) {}', 'trailing comma in parameters (8.0)'];
        yield 'trailing comma in a call' => ['f($a, );', 'trailing comma in a call (7.3)'];
        yield 'named argument' => ['f(a: 1);', 'named argument (8.0)'];
        yield 'short destructuring' => ['[$a, $b] = $c;', '[...] destructuring (7.1)'];
        yield 'destructuring in foreach' => ['foreach ($a as [$b, $c]) {}', '[...] destructuring (7.1)'];
        yield 'keyed list' => ['list("a" => $a) = $b;', 'keys in list() (7.1)'];
        yield 'multi-catch' => ['try {} catch (A | B $e) {}', 'catch of several types (7.1)'];
        yield 'catch without variable' => ['try {} catch (\Throwable) {}', 'catch without a variable (8.0)'];
        yield 'array spread' => ['$a = [...$b];', 'spread in an array (7.4)'];
        yield 'first-class callable' => ['$f = strlen(...);', 'first-class callable f(...) (8.1)'];
        yield 'numeric separator' => ['$a = 1_000;', 'numeric literal separator (7.4)'];
        yield '$object::class' => ['$a = $b::class;', '$object::class (8.0)'];
        yield 'throw expression' => ['$a = $b ?? throw new E();', 'throw as an expression (8.0)'];
        yield 'flexible heredoc' => ["\$a = <<<X\n  a\n  X;", 'indented heredoc end (7.3)'];
        yield 'str_contains' => ['$a = str_contains($b, "c");', 'str_contains() (8.0)'];
        yield 'qualified str_starts_with' => ['$a = \str_starts_with($b, "c");', 'str_starts_with() (8.0)'];
        yield 'array_key_first' => ['$a = array_key_first($b);', 'array_key_first() (7.3)'];
        yield 'hrtime' => ['$a = hrtime(true);', 'hrtime() (7.3)'];
        yield 'JSON_THROW_ON_ERROR' => ['$a = json_decode($b, false, 512, JSON_THROW_ON_ERROR);', 'JSON_THROW_ON_ERROR (7.3)'];
        yield 'Socket type' => ['function f(Socket $s) {}', 'Socket (8.0)'];
        yield 'JsonException' => ['try {} catch (JsonException $e) {}', 'JsonException (7.3)'];
    }

    /** @dataProvider newerCode */
    public function testFindsNewerCode(string $code, string $what): void
    {
        $found = Php70Syntax::violations("<?php\n$code\n");
        self::assertNotEmpty(preg_grep('/^line \d+: ' . preg_quote($what, '/') . '$/', $found), implode("\n", $found));
    }

    public function testTellsTheLine(): void
    {
        self::assertSame(
            ['line 3: [...] destructuring (7.1)', 'line 6: indented heredoc end (7.3)', 'line 7: void type (7.1)'],
            Php70Syntax::violations("<?php\n/* a\n */ [\$a] = \$b;\n\$c = <<<X\n  x\n  X;\nfunction f(): void {}\n"),
        );
    }

    public function testPassesPhp70Code(): void
    {
        $code = <<<'PHP'
            <?php
            declare(strict_types=1);
            namespace A\B;
            use C\D;
            final class E extends D implements \Countable
            {
                const X = [1, 2];
                public static $a = array(1, 2,);
                protected $b = null;
                private static $c;
                var $d;
                public static function f(string $a, int ...$rest): string
                {
                    static $calls = 0;
                    $g = static function (array $x = array(), &$y = null) use (&$calls): bool {
                        return isset($x[0]) ? $x[0] === 1 : false;
                    };
                    list($h, , $i) = explode(',', $a);
                    list(self::$c, $j) = [1, 2];
                    $k = $a ?? 'none';
                    $l = $a <=> 'b';
                    $m = new static();
                    $n = static::X;
                    $o = $this->p()->q(...$rest);
                    $p = <<<EOT
            text
            EOT;
                    if ($a === '') throw new \InvalidArgumentException('empty');
                    try {
                        $q = json_encode([1], JSON_PRESERVE_ZERO_FRACTION) ?: 'x';
                    } catch (\Throwable $e) {
                        $q = null;
                    } finally {
                        $r = 1;
                    }
                    switch ($a) {
                        case 'a':
                            throw new \RuntimeException('a');
                    }
                    $s = $a ? self::X : static::X;
                    return $a . self::class . \strlen($a);
                }
                public function count(): int { return 0; }
                abstract protected function t(callable $f, \Closure $g, self $h, E $i = null);
            }
            PHP;
        self::assertSame([], Php70Syntax::violations($code));
    }

    public function testTheNewerCodeReallyIsNewerThanPhp70(): void
    {
        // The PHP 8 observer uses several of the constructs above; the
        // checker must see them all, or it proves nothing for the PHP 7 one.
        $found = implode("\n", Php70Syntax::violations((string) file_get_contents(dirname(__DIR__) . '/WampObserver.php')));
        foreach (['typed property (7.4)', 'class constant modifier (7.1)', 'void type (7.1)', 'nullable type (7.1)',
            'arrow function (7.4)', 'catch without a variable (8.0)', '[...] destructuring (7.1)', 'str_contains() (8.0)'] as $what) {
            self::assertStringContainsString($what, $found);
        }
    }
}
