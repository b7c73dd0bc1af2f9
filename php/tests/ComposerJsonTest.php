<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Tests\Support\Php70Syntax;

require_once __DIR__ . '/Support/Php70Syntax.php';

/**
 * php/composer.json, checked without composer (which cannot be installed
 * here): it parses, it requires nothing but PHP, and its autoload mapping
 * finds every class of the package in the file that declares it.
 */
final class ComposerJsonTest extends TestCase
{
    private const ROOT = __DIR__ . '/..';

    /** @return array<string, mixed> */
    private static function composer(): array
    {
        return json_decode((string) file_get_contents(self::ROOT . '/composer.json'), true, 512, JSON_THROW_ON_ERROR);
    }

    public function testIsAPackageWithoutDependencies(): void
    {
        $composer = self::composer();
        // composer's own pattern for package names.
        self::assertMatchesRegularExpression('{^[a-z0-9]([_.-]?[a-z0-9]+)*/[a-z0-9](([_.]|-{1,2})?[a-z0-9]+)*$}D', $composer['name']);
        self::assertSame('library', $composer['type']);
        // Kept true by testThePackageIsPhp80Code.
        self::assertSame(['php' => '>=8.0'], $composer['require']);
        self::assertArrayNotHasKey('require-dev', $composer);
        foreach (array_keys($composer['suggest']) as $extension) {
            self::assertStringStartsWith('ext-', $extension);
        }
    }

    /**
     * The package says PHP 8.0: nothing in what it autoloads may be newer
     * (readonly, enums, never, array_is_list(), … as the checker knows them).
     */
    public function testThePackageIsPhp80Code(): void
    {
        $files = [self::ROOT . '/WampObserver.php'];
        $tree = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator(self::ROOT . '/src', \FilesystemIterator::SKIP_DOTS));
        foreach ($tree as $file) {
            if ($file->getExtension() === 'php') {
                $files[] = $file->getPathname();
            }
        }
        self::assertGreaterThan(10, count($files));
        foreach ($files as $file) {
            self::assertSame([], Php70Syntax::violations((string) file_get_contents($file), '8.0'), $file);
        }
    }

    public function testPsr4MapsEveryClassToItsFile(): void
    {
        $composer = self::composer();
        foreach (['autoload', 'autoload-dev'] as $section) {
            foreach ($composer[$section]['psr-4'] as $prefix => $dir) {
                self::assertStringEndsWith('\\', $prefix);
                self::assertDirectoryExists(self::ROOT . "/$dir");
                $files = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator(self::ROOT . "/$dir", \FilesystemIterator::SKIP_DOTS));
                $n = 0;
                foreach ($files as $file) {
                    $path = (string) $file;
                    $relative = substr($path, strlen(self::ROOT . "/$dir"));
                    if (!str_ends_with($path, '.php') || ($section === 'autoload-dev' && !preg_match('{^(Support/)?[A-Z]\w*\.php$}', $relative))) {
                        continue; // not a class file (bootstrap-php7.php)
                    }
                    $want = $prefix . str_replace('/', '\\', substr($relative, 0, -4));
                    self::assertSame([$want], self::declaredClasses($path), "$dir$relative");
                    $n++;
                }
                self::assertGreaterThan(0, $n, "$prefix => $dir maps no class");
            }
        }
    }

    public function testClassmapHoldsOnlyThePhp8Observer(): void
    {
        // Both observer files declare the global WampObserver: only one may
        // be in the classmap, and the PHP 7 one needs no PHP 8.1 anyway.
        self::assertSame(['WampObserver.php'], self::composer()['autoload']['classmap']);
        self::assertSame(['WampObserver'], self::declaredClasses(self::ROOT . '/WampObserver.php'));
    }

    public function testTheMappingAloneLoadsEveryClass(): void
    {
        // In a fresh process, without autoload.php: an autoloader built
        // from composer.json as composer's does it (PSR-4 prefixes, then
        // the classmap) loads each class of src/ by name.
        $classes = [];
        $files = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator(self::ROOT . '/src', \FilesystemIterator::SKIP_DOTS));
        foreach ($files as $file) {
            $classes = array_merge($classes, self::declaredClasses((string) $file));
        }
        $classes[] = 'WampObserver';
        $code = <<<'PHP'
            $root = getenv('ROOT');
            $composer = json_decode(file_get_contents("$root/composer.json"), true);
            spl_autoload_register(function (string $class) use ($root, $composer): void {
                foreach ($composer['autoload']['psr-4'] as $prefix => $dir) {
                    if (str_starts_with($class, $prefix)) {
                        $file = "$root/$dir" . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                        if (is_file($file)) {
                            require $file;
                            return;
                        }
                    }
                }
                foreach ($composer['autoload']['classmap'] as $file) {
                    if (basename($file, '.php') === $class) {
                        require "$root/$file";
                    }
                }
            });
            $missing = array_filter(explode(',', getenv('CLASSES')), fn ($c) => !class_exists($c) && !interface_exists($c) && !trait_exists($c) && !enum_exists($c));
            echo json_encode(array_values($missing));
            PHP;
        $command = ['env', 'ROOT=' . realpath(self::ROOT), 'CLASSES=' . implode(',', $classes), PHP_BINARY, '-d', 'display_errors=stderr', '-r', $code];
        $process = proc_open($command, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $stdout = stream_get_contents($pipes[1]);
        $stderr = stream_get_contents($pipes[2]);
        proc_close($process);
        self::assertSame(['[]', ''], [$stdout, $stderr]);
        self::assertGreaterThan(20, count($classes));
    }

    /** @return list<string> the classes, interfaces, traits and enums $file declares */
    private static function declaredClasses(string $file): array
    {
        $tokens = array_values(array_filter(
            token_get_all((string) file_get_contents($file)),
            fn ($t) => !is_array($t) || !in_array($t[0], [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT], true),
        ));
        $namespace = '';
        $classes = [];
        foreach ($tokens as $i => $token) {
            if (!is_array($token)) {
                continue;
            }
            if ($token[0] === T_NAMESPACE && is_array($tokens[$i + 1])) {
                $namespace = $tokens[$i + 1][1] . '\\';
            }
            $previous = $tokens[$i - 1] ?? null;
            if (in_array($token[0], [T_CLASS, T_INTERFACE, T_TRAIT, T_ENUM], true)
                && !(is_array($previous) && in_array($previous[0], [T_DOUBLE_COLON, T_NEW], true))
                && is_array($tokens[$i + 1]) && $tokens[$i + 1][0] === T_STRING) {
                $classes[] = $namespace . $tokens[$i + 1][1];
            }
        }
        return $classes;
    }
}
