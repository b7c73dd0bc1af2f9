<?php

declare(strict_types=1);

// No composer here: map Wamp\Foo\Bar to src/Foo/Bar.php, and load the
// observer class that lives in the global namespace for compatibility,
// unless a WampObserver is already loaded (php7/WampObserver.php, which
// tests/bootstrap-php7.php loads first).

if (!class_exists('WampObserver', false)) {
    require_once __DIR__ . '/WampObserver.php';
}

spl_autoload_register(static function (string $class): void {
    $prefix = 'Wamp\\';
    if (!str_starts_with($class, $prefix)) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
